//! One certificate order: new-order, challenges, finalize with our own CSR, download the chain.

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    Order, OrderStatus, RetryPolicy,
};

use crate::challenges::Challenges;
use crate::settings::{AcmeSettings, ChallengeMode, KeyType};
use crate::AcmeError;

/// An issued certificate chain (leaf first) and its private key, both PEM.
#[derive(Clone)]
pub struct Certificate {
    /// The chain as the CA sent it.
    pub chain_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate").finish_non_exhaustive()
    }
}

/// What the operator should check when `mode` validation fails.
pub fn hint(mode: ChallengeMode, domains: &[String]) -> String {
    let names = domains.join(", ");
    match mode {
        ChallengeMode::TlsAlpn01 => format!(
            "Check that DNS for {names} points to this server and that port 443 is reachable from the internet and reaches this server's [WEB] https port directly (no proxy or CDN terminating TLS in front)"
        ),
        _ => format!(
            "Check that DNS for {names} points to this server and that port 80 is reachable from the internet and reaches this server's [WEB] http port (firewall, port forwarding)"
        ),
    }
}

/// Obtain a certificate for `s.domains` answering `mode` challenges (HTTP-01 or TLS-ALPN-01).
pub async fn issue(
    account: &Account,
    s: &AcmeSettings,
    challenges: &Challenges,
    mode: ChallengeMode,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Certificate, AcmeError> {
    let ids: Vec<Identifier> = s.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut new_order = NewOrder::new(&ids);
    if let Some(r) = replaces {
        new_order = new_order.replaces(r);
    }
    tracing::info!(
        "ACME: ordering a certificate for {} from {} ({})",
        s.domains.join(", "),
        s.directory_url,
        mode.as_str()
    );
    let mut order = account.new_order(&new_order).await?;
    let result = run_order(&mut order, s, challenges, mode).await;
    challenges.clear();
    result
}

async fn run_order(
    order: &mut Order,
    s: &AcmeSettings,
    challenges: &Challenges,
    mode: ChallengeMode,
) -> Result<Certificate, AcmeError> {
    let ty = match mode {
        ChallengeMode::TlsAlpn01 => ChallengeType::TlsAlpn01,
        _ => ChallengeType::Http01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::Challenge {
                    detail: format!("authorization for {} is {other:?}", authz.identifier()),
                    hint: hint(mode, &s.domains),
                })
            }
        }
        let mut challenge = authz
            .challenge(ty.clone())
            .ok_or_else(|| AcmeError::Challenge {
                detail: format!("the CA offers no {} challenge", mode.as_str()),
                hint: "Set [ACME] challenge to another type or auto".to_string(),
            })?;
        let domain = challenge.identifier().to_string();
        let key_auth = challenge.key_authorization();
        match mode {
            ChallengeMode::TlsAlpn01 => {
                challenges.add_tls_alpn01(&domain, key_auth.digest().as_ref())?
            }
            _ => challenges.add_http01(&challenge.token, key_auth.as_str()),
        }
        tracing::info!(
            "ACME: answering the {} challenge for {domain}",
            mode.as_str()
        );
        challenge.set_ready().await?;
    }

    let retries = RetryPolicy::new()
        .initial_delay(std::time::Duration::from_millis(250))
        .timeout(s.order_timeout);
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Challenge {
            detail: failure_detail(order, status).await,
            hint: hint(mode, &s.domains),
        });
    }
    tracing::info!(
        "ACME: {} validated; requesting the certificate",
        s.domains.join(", ")
    );

    let (csr, key_pem) = csr(&s.domains, s.key_type)?;
    order.finalize_csr(&csr).await?;
    let chain_pem = order.poll_certificate(&retries).await?;
    Ok(Certificate { chain_pem, key_pem })
}

/// What the CA said about failed challenges, for the log.
async fn failure_detail(order: &mut Order, status: OrderStatus) -> String {
    let mut details = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for c in &authz.challenges {
            if let Some(e) = &c.error {
                let what = e.detail.clone().unwrap_or_else(|| e.to_string());
                details.push(format!("{}: {what}", authz.identifier()));
            }
        }
    }
    if details.is_empty() {
        format!("the order is {status:?} after validation")
    } else {
        format!("validation failed: {}", details.join("; "))
    }
}

/// A new private key and a CSR naming `domains`; returns (CSR DER, key PEM).
pub fn csr(domains: &[String], key_type: KeyType) -> Result<(Vec<u8>, String), AcmeError> {
    let key_err = |e: rcgen::Error| AcmeError::Key(e.to_string());
    let key = match key_type {
        KeyType::EcdsaP256 => {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(key_err)?
        }
        KeyType::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let rsa = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
                .map_err(|e| AcmeError::Key(e.to_string()))?;
            let der = rsa
                .to_pkcs8_der()
                .map_err(|e| AcmeError::Key(e.to_string()))?;
            let der = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
                .map_err(key_err)?
        }
    };
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(key_err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(key_err)?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_names_every_domain() {
        let domains = vec!["a.example".to_string(), "b.example".to_string()];
        let (der, key) = csr(&domains, KeyType::EcdsaP256).expect("csr");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        for d in &domains {
            assert!(der.windows(d.len()).any(|w| w == d.as_bytes()));
        }
    }

    #[test]
    fn hints_name_the_port() {
        let d = vec!["smp.example".to_string()];
        assert!(hint(ChallengeMode::Http01, &d).contains("port 80"));
        assert!(hint(ChallengeMode::TlsAlpn01, &d).contains("port 443"));
    }
}
