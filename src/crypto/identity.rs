//! The server's identity files, made and checked without openssl.
//!
//! The reference's `init` runs openssl to make an offline CA (`ca.key`, `ca.crt`, self-signed,
//! CN "SMP server CA", O "SimpleX") and an online server key and certificate signed by it
//! (`server.key`, `server.crt`, CN = the --fqdn/--ip value), then writes `fingerprint`: the
//! base64url (with `=` padding) SHA-256 of the CA certificate's DER and a newline. Clients pin
//! that fingerprint in the server address, so the CA must never change; the server certificate
//! can be renewed with the CA key (`smp-server cert`).
//!
//! Certificates follow the extensions of the reference's openssl configuration:
//!
//! ```text
//! CA:     subjectKeyIdentifier, authorityKeyIdentifier, basicConstraints critical CA:TRUE
//! server: basicConstraints CA:FALSE, keyUsage digitalSignature+nonRepudiation+keyAgreement,
//!         extendedKeyUsage serverAuth, subjectKeyIdentifier, authorityKeyIdentifier
//! validity: now .. now + 999999 days; serial: 20 random bytes; SKI = SHA-1(public key)
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::keys::{os_random, KeyAlgorithm, PrivateSignKey, PublicKey};
use super::x509::{
    cert_public_key, cert_signed_by, cert_to_pem, certs_from_pem, constructed, signed_object, tag,
    tlv, x509_time,
};
use super::CryptoError;

/// The offline CA's private key; operators may move it off the server after `init`.
pub const CA_KEY_FILE: &str = "ca.key";
/// The CA certificate; its SHA-256 is the server's identity (fingerprint).
pub const CA_CRT_FILE: &str = "ca.crt";
/// The online TLS key.
pub const SERVER_KEY_FILE: &str = "server.key";
/// The online TLS certificate, signed by the CA.
pub const SERVER_CRT_FILE: &str = "server.crt";
/// base64url(SHA-256(CA certificate DER)), as the reference writes it.
pub const FINGERPRINT_FILE: &str = "fingerprint";

/// Validity of issued certificates, as the reference's `openssl -days 999999`.
const VALIDITY_DAYS: u64 = 999_999;
/// Common name of the CA certificate, as the reference.
const CA_COMMON_NAME: &str = "SMP server CA";
/// Organization of the CA certificate, as the reference.
const CA_ORGANIZATION: &str = "SimpleX";

/// The server's identity: SHA-256 of the CA certificate DER; clients pin it in addresses.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_cert(cert_der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(cert_der).into())
    }

    /// base64url with `=` padding, exactly as the reference writes and prints it.
    pub fn to_base64url(&self) -> String {
        base64::engine::general_purpose::URL_SAFE.encode(self.0)
    }

    /// Parse base64url, with or without padding (addresses are typed by people).
    pub fn from_base64url(s: &str) -> Result<Self, CryptoError> {
        let s = s.trim();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| CryptoError::BadKey("fingerprint is not base64url"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadKey("fingerprint is not 32 bytes"))?;
        Ok(Fingerprint(bytes))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64url())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", self.to_base64url())
    }
}

/// What the TLS layer serves: the chain (DER, server certificate first, CA last), its key,
/// and the fingerprint clients expect.
#[derive(Debug)]
pub struct Identity {
    /// DER certificates: the certificates of `server.crt`, then the CA of `ca.crt`.
    pub chain: Vec<Vec<u8>>,
    /// The key of the first certificate in `chain`.
    pub server_key: PrivateSignKey,
    /// SHA-256 of the CA certificate.
    pub fingerprint: Fingerprint,
}

// ---- DER pieces of the certificates we issue ----

const OID_CN: [u8; 3] = [0x55, 0x04, 0x03];
const OID_O: [u8; 3] = [0x55, 0x04, 0x0a];
const OID_SKI: [u8; 3] = [0x55, 0x1d, 0x0e];
const OID_KEY_USAGE: [u8; 3] = [0x55, 0x1d, 0x0f];
const OID_BASIC_CONSTRAINTS: [u8; 3] = [0x55, 0x1d, 0x13];
const OID_AKI: [u8; 3] = [0x55, 0x1d, 0x23];
const OID_EXT_KEY_USAGE: [u8; 3] = [0x55, 0x1d, 0x25];
const OID_SERVER_AUTH: [u8; 8] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// A Name of single-attribute RDNs (UTF8String values, as OpenSSL writes them).
fn name_der(attrs: &[(&[u8], &str)]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> = attrs
        .iter()
        .map(|(oid, value)| {
            let atv = constructed(
                tag::SEQUENCE,
                &[
                    &tlv(tag::OID, oid),
                    &tlv(tag::UTF8_STRING, value.as_bytes()),
                ],
            );
            constructed(tag::SET, &[&atv])
        })
        .collect();
    let parts: Vec<&[u8]> = rdns.iter().map(Vec::as_slice).collect();
    constructed(tag::SEQUENCE, &parts)
}

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let oid = tlv(tag::OID, oid);
    let value = tlv(tag::OCTET_STRING, value);
    if critical {
        constructed(tag::SEQUENCE, &[&oid, &[tag::BOOLEAN, 1, 0xff], &value])
    } else {
        constructed(tag::SEQUENCE, &[&oid, &value])
    }
}

/// Subject key identifier as OpenSSL's `hash` method: SHA-1 of the subjectPublicKey bits.
fn key_id(key: &PublicKey) -> Vec<u8> {
    sha1::Sha1::digest(key.raw()).to_vec()
}

fn ski_ext(key: &PublicKey) -> Vec<u8> {
    extension(&OID_SKI, false, &tlv(tag::OCTET_STRING, &key_id(key)))
}

fn aki_ext(issuer: &PublicKey) -> Vec<u8> {
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
    extension(
        &OID_AKI,
        false,
        &constructed(tag::SEQUENCE, &[&tlv(0x80, &key_id(issuer))]),
    )
}

struct CertSpec<'a> {
    issuer_name: &'a [u8],
    subject_name: &'a [u8],
    subject_key: &'a PublicKey,
    extensions: Vec<Vec<u8>>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Build and sign a v3 certificate.
fn issue(signer: &PrivateSignKey, spec: &CertSpec<'_>) -> Result<Vec<u8>, CryptoError> {
    let mut serial = [0u8; 20];
    os_random(&mut serial)?;
    // Positive and minimally encoded: top bit clear, first byte non-zero.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let now = now_unix();
    let validity = constructed(
        tag::SEQUENCE,
        &[&x509_time(now), &x509_time(now + VALIDITY_DAYS * 86_400)],
    );
    let exts: Vec<&[u8]> = spec.extensions.iter().map(Vec::as_slice).collect();
    let extensions = tlv(0xa3, &constructed(tag::SEQUENCE, &exts));
    let alg_id = constructed(
        tag::SEQUENCE,
        &[&tlv(
            tag::OID,
            &[0x2b, 0x65, PublicKey::oid_byte(signer.algorithm())],
        )],
    );
    let tbs = constructed(
        tag::SEQUENCE,
        &[
            &[0xa0, 0x03, tag::INTEGER, 0x01, 0x02], // [0] version v3
            &tlv(tag::INTEGER, &serial),
            &alg_id,
            spec.issuer_name,
            &validity,
            spec.subject_name,
            &spec.subject_key.to_der(),
            &extensions,
        ],
    );
    Ok(signed_object(signer, &tbs))
}

fn ca_name() -> Vec<u8> {
    name_der(&[(&OID_CN, CA_COMMON_NAME), (&OID_O, CA_ORGANIZATION)])
}

fn issue_ca(ca_key: &PrivateSignKey) -> Result<Vec<u8>, CryptoError> {
    let public = ca_key.public();
    let name = ca_name();
    let basic_constraints = constructed(tag::SEQUENCE, &[&[tag::BOOLEAN, 1, 0xff]]);
    issue(
        ca_key,
        &CertSpec {
            issuer_name: &name,
            subject_name: &name,
            subject_key: &public,
            extensions: vec![
                ski_ext(&public),
                aki_ext(&public),
                extension(&OID_BASIC_CONSTRAINTS, true, &basic_constraints),
            ],
        },
    )
}

/// A self-signed certificate for `key`, as the reference's agents make for their service
/// credentials (one certificate that is its own identity).
pub fn self_signed_certificate(key: &PrivateSignKey) -> Result<Vec<u8>, CryptoError> {
    issue_ca(key)
}

fn issue_server(
    ca_key: &PrivateSignKey,
    ca_cert: &[u8],
    server_key: &PublicKey,
    common_name: &str,
) -> Result<Vec<u8>, CryptoError> {
    use der::{Decode, Encode};
    let ca = x509_cert::Certificate::from_der(ca_cert)
        .map_err(|e| CryptoError::BadCertificate(format!("{CA_CRT_FILE}: {e}")))?;
    let issuer_name = ca
        .tbs_certificate()
        .subject()
        .to_der()
        .map_err(|e| CryptoError::BadCertificate(format!("{CA_CRT_FILE}: {e}")))?;
    let subject_name = name_der(&[(&OID_CN, common_name)]);
    // keyUsage bits 0 (digitalSignature), 1 (nonRepudiation), 4 (keyAgreement): 3 unused bits.
    let key_usage = tlv(tag::BIT_STRING, &[0x03, 0b1100_1000]);
    let eku = constructed(tag::SEQUENCE, &[&tlv(tag::OID, &OID_SERVER_AUTH)]);
    issue(
        ca_key,
        &CertSpec {
            issuer_name: &issuer_name,
            subject_name: &subject_name,
            subject_key: server_key,
            extensions: vec![
                extension(
                    &OID_BASIC_CONSTRAINTS,
                    false,
                    &constructed(tag::SEQUENCE, &[]),
                ),
                extension(&OID_KEY_USAGE, false, &key_usage),
                extension(&OID_EXT_KEY_USAGE, false, &eku),
                ski_ext(server_key),
                aki_ext(&ca_key.public()),
            ],
        },
    )
}

// ---- files ----

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CryptoError + '_ {
    move |source| CryptoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` atomically (temporary file + rename), creating the file with
/// `mode` so a private key is never readable by others, not even briefly.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CryptoError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read_file(dir: &Path, name: &str, hint: &'static str) -> Result<String, CryptoError> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(CryptoError::MissingFile { path, hint })
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

fn read_key(dir: &Path, name: &str, hint: &'static str) -> Result<PrivateSignKey, CryptoError> {
    let pem = zeroize::Zeroizing::new(read_file(dir, name, hint)?);
    PrivateSignKey::from_pem(&pem)
        .map_err(|e| CryptoError::IdentityMismatch(format!("{}: {e}", dir.join(name).display())))
}

fn read_certs(dir: &Path, name: &str) -> Result<Vec<Vec<u8>>, CryptoError> {
    let pem = read_file(
        dir,
        name,
        "run `smp-server init` to create the server identity",
    )?;
    certs_from_pem(&pem)
        .map_err(|e| CryptoError::BadCertificate(format!("{}: {e}", dir.join(name).display())))
}

const KEY_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

fn write_server(
    dir: &Path,
    ca_key: &PrivateSignKey,
    ca_cert: &[u8],
    alg: KeyAlgorithm,
    common_name: &str,
) -> Result<(), CryptoError> {
    let server_key = PrivateSignKey::generate(alg)?;
    let server_cert = issue_server(ca_key, ca_cert, &server_key.public(), common_name)?;
    write_file(
        &dir.join(SERVER_KEY_FILE),
        server_key.to_pem().as_bytes(),
        KEY_MODE,
    )?;
    write_file(
        &dir.join(SERVER_CRT_FILE),
        cert_to_pem(&server_cert).as_bytes(),
        PUBLIC_MODE,
    )
}

/// Create a new identity in `dir` (created if needed): CA key and certificate, server key and
/// certificate for `common_name`, and the fingerprint file. Refuses to overwrite any existing
/// identity file, because replacing the CA changes the server's address.
pub fn create_identity(
    dir: &Path,
    alg: KeyAlgorithm,
    common_name: &str,
) -> Result<Fingerprint, CryptoError> {
    if !alg.is_signature() {
        return Err(CryptoError::BadKey(
            "identity keys must be Ed25519 or Ed448",
        ));
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    for name in [
        CA_KEY_FILE,
        CA_CRT_FILE,
        SERVER_KEY_FILE,
        SERVER_CRT_FILE,
        FINGERPRINT_FILE,
    ] {
        let path = dir.join(name);
        if path.exists() {
            return Err(CryptoError::IdentityMismatch(format!(
                "{} already exists; refusing to replace the server identity",
                path.display()
            )));
        }
    }
    let ca_key = PrivateSignKey::generate(alg)?;
    let ca_cert = issue_ca(&ca_key)?;
    write_file(&dir.join(CA_KEY_FILE), ca_key.to_pem().as_bytes(), KEY_MODE)?;
    write_file(
        &dir.join(CA_CRT_FILE),
        cert_to_pem(&ca_cert).as_bytes(),
        PUBLIC_MODE,
    )?;
    write_server(dir, &ca_key, &ca_cert, alg, common_name)?;
    let fingerprint = Fingerprint::of_cert(&ca_cert);
    write_file(
        &dir.join(FINGERPRINT_FILE),
        format!("{fingerprint}\n").as_bytes(),
        PUBLIC_MODE,
    )?;
    Ok(fingerprint)
}

/// Replace the server key and certificate with new ones signed by the existing `ca.key`
/// (same algorithm as the CA). The CA and so the fingerprint stay the same.
pub fn renew_server_cert(dir: &Path, common_name: &str) -> Result<(), CryptoError> {
    let ca_key = read_key(
        dir,
        CA_KEY_FILE,
        "the CA key is needed to sign a new server certificate; copy it back from offline storage",
    )?;
    let ca_cert = first_ca_cert(dir)?;
    if cert_public_key(&ca_cert)? != ca_key.public() {
        return Err(CryptoError::IdentityMismatch(format!(
            "{} does not match {}",
            dir.join(CA_KEY_FILE).display(),
            dir.join(CA_CRT_FILE).display()
        )));
    }
    write_server(dir, &ca_key, &ca_cert, ca_key.algorithm(), common_name)
}

fn first_ca_cert(dir: &Path) -> Result<Vec<u8>, CryptoError> {
    read_certs(dir, CA_CRT_FILE)?
        .into_iter()
        .next()
        .ok_or_else(|| CryptoError::BadCertificate(format!("{CA_CRT_FILE}: empty")))
}

/// The fingerprint of `dir/ca.crt` (its first certificate), whatever the fingerprint file says.
pub fn fingerprint_of_ca(dir: &Path) -> Result<Fingerprint, CryptoError> {
    Ok(Fingerprint::of_cert(&first_ca_cert(dir)?))
}

/// Load and cross-check the identity the server serves: the server certificate's key must be
/// `server.key`, each certificate must be signed by the next one up to `ca.crt`, and the
/// `fingerprint` file (if present; made by `init`) must match `ca.crt`.
pub fn load_identity(dir: &Path) -> Result<Identity, CryptoError> {
    let ca_cert = first_ca_cert(dir)?;
    let mut chain = read_certs(dir, SERVER_CRT_FILE)?;
    if chain.last() != Some(&ca_cert) {
        chain.push(ca_cert.clone());
    }
    let server_key = read_key(
        dir,
        SERVER_KEY_FILE,
        "run `smp-server cert` to make a new server key and certificate",
    )?;
    if cert_public_key(&chain[0])? != server_key.public() {
        return Err(CryptoError::IdentityMismatch(format!(
            "the certificate in {} is not for the key in {}",
            dir.join(SERVER_CRT_FILE).display(),
            dir.join(SERVER_KEY_FILE).display()
        )));
    }
    for pair in chain.windows(2) {
        let issuer = cert_public_key(&pair[1])?;
        if !cert_signed_by(&pair[0], &issuer) {
            return Err(CryptoError::IdentityMismatch(format!(
                "the certificate in {} is not signed by the CA in {}",
                dir.join(SERVER_CRT_FILE).display(),
                dir.join(CA_CRT_FILE).display()
            )));
        }
    }
    let fingerprint = Fingerprint::of_cert(&ca_cert);
    match read_file(dir, FINGERPRINT_FILE, "") {
        Ok(saved) => {
            let line = saved.lines().next().unwrap_or("");
            if Fingerprint::from_base64url(line).ok() != Some(fingerprint) {
                return Err(CryptoError::IdentityMismatch(format!(
                    "stored fingerprint in {} does not match {} (expected {fingerprint})",
                    dir.join(FINGERPRINT_FILE).display(),
                    dir.join(CA_CRT_FILE).display()
                )));
            }
        }
        Err(CryptoError::MissingFile { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(Identity {
        chain,
        server_key,
        fingerprint,
    })
}
