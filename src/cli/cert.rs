//! `smp-server cert`: a new online TLS key and certificate, signed by `ca.key`.
//!
//! The identity (CA certificate, fingerprint, server address) does not change.

use std::path::Path;

use super::args::CertArgs;
use super::console::print_ca_key_advice;
use super::{require_initialized, CliError};
use crate::config::Paths;
use crate::crypto::keys::KeyAlgorithm;
use crate::crypto::x509::{cert_public_key, certs_from_pem};

/// Run `cert`.
pub fn run(args: CertArgs, paths: &Paths) -> Result<(), CliError> {
    require_initialized(paths)?;
    let ca_alg = cert_public_key(&first_cert(&paths.ca_cert_file())?)?.algorithm();
    if let Some(wanted) = args.sign_algorithm {
        if wanted.key_algorithm() != ca_alg {
            return Err(CliError::Message(format!(
                "Error: the online certificate uses the CA's algorithm ({}); --sign-algorithm {wanted:?} cannot be used with this identity.",
                alg_name(ca_alg)
            )));
        }
    }
    let common_name = match args.cn {
        Some(cn) => cn,
        None => {
            let path = paths.server_cert_file();
            subject_common_name(&first_cert(&path)?).ok_or_else(|| {
                CliError::Message(format!(
                    "Error: cannot read the Common Name of {}; pass it with --cn FQDN",
                    path.display()
                ))
            })?
        }
    };
    crate::crypto::identity::renew_server_cert(&paths.cfg_dir, &common_name)?;
    println!("Generated new server credentials");
    print_ca_key_advice(&paths.ca_key_file());
    Ok(())
}

fn alg_name(alg: KeyAlgorithm) -> &'static str {
    match alg {
        KeyAlgorithm::Ed25519 => "ED25519",
        KeyAlgorithm::Ed448 => "ED448",
        KeyAlgorithm::X25519 => "X25519",
        KeyAlgorithm::X448 => "X448",
    }
}

/// The first certificate (DER) of a PEM file.
fn first_cert(path: &Path) -> Result<Vec<u8>, CliError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
    certs_from_pem(&pem)?
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Message(format!("Error: no certificate in {}", path.display())))
}

/// One DER element at the start of `buf`: (tag, content, rest).
fn der_element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject's Common Name (OID 2.5.4.3) of a DER certificate.
///
/// ```text
/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
/// tbsCertificate ::= SEQUENCE { [0] version OPTIONAL, serial, signature, issuer, validity,
///                               subject, ... }
/// Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value string }
/// ```
fn subject_common_name(cert: &[u8]) -> Option<String> {
    const OID_CN: [u8; 3] = [0x55, 0x04, 0x03];
    let (_, cert, _) = der_element(cert)?;
    let (_, tbs, _) = der_element(cert)?;
    let (tag, _, after_version) = der_element(tbs)?;
    let mut rest = if tag == 0xa0 { after_version } else { tbs };
    for _ in 0..4 {
        // serial, signature algorithm, issuer, validity
        rest = der_element(rest)?.2;
    }
    let (_, mut rdns, _) = der_element(rest)?;
    while !rdns.is_empty() {
        let (_, set, next) = der_element(rdns)?;
        rdns = next;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (_, attr, next) = der_element(attrs)?;
            attrs = next;
            let (tag, oid, value) = der_element(attr)?;
            if tag == 0x06 && oid == OID_CN {
                let (_, text, _) = der_element(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::{create_identity, SERVER_CRT_FILE};

    #[test]
    fn reads_common_name_of_issued_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        create_identity(dir.path(), KeyAlgorithm::Ed25519, "smp.example.com").expect("identity");
        let cert = first_cert(&dir.path().join(SERVER_CRT_FILE)).expect("cert");
        assert_eq!(
            subject_common_name(&cert).as_deref(),
            Some("smp.example.com")
        );
    }

    #[test]
    fn rejects_truncated_der() {
        assert_eq!(subject_common_name(&[0x30, 0x05, 0x30]), None);
        assert_eq!(der_element(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
