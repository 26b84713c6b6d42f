//! The ACME account: created once, stored 0600, reused, re-created when the CA forgot it.

use instant_acme::{Account, AccountBuilder, AccountCredentials, NewAccount};
use serde::{Deserialize, Serialize};

use crate::files::write_atomic;
use crate::settings::AcmeSettings;
use crate::AcmeError;

/// The problem type a CA returns for an account it does not know (RFC 8555 §7.3.1).
pub const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// What is stored in the account file: the credentials and the directory they belong to, so
/// that switching `directory` (staging to production) creates a new account instead of
/// presenting credentials the other CA has never seen.
#[derive(Serialize, Deserialize)]
struct Stored {
    directory: String,
    credentials: AccountCredentials,
}

fn builder(s: &AcmeSettings) -> Result<AccountBuilder, AcmeError> {
    Ok(match &s.ca_root {
        Some(root) => Account::builder_with_root(root)?,
        None => Account::builder()?,
    })
}

/// Load the stored account for this directory, or create and store a new one.
pub async fn load_or_create(s: &AcmeSettings) -> Result<Account, AcmeError> {
    if let Some(stored) = read_stored(s)? {
        if stored.directory == s.directory_url {
            let account = builder(s)?.from_credentials(stored.credentials).await?;
            tracing::debug!("ACME: using the stored account");
            return Ok(account);
        }
        tracing::info!("ACME: the directory changed; creating a new account there");
    }
    create(s).await
}

/// Create a new account (agreeing to the CA's terms) and store it 0600.
pub async fn create(s: &AcmeSettings) -> Result<Account, AcmeError> {
    let contact = s.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder(s)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory_url.clone(),
            None,
        )
        .await?;
    let stored = Stored {
        directory: s.directory_url.clone(),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&stored).map_err(|e| AcmeError::Account {
        path: s.account_file.display().to_string(),
        detail: e.to_string(),
    })?;
    write_atomic(&s.account_file, &json, true, "ACME account file")?;
    tracing::info!(
        "ACME: created an account at {} (stored in {})",
        s.directory_url,
        s.account_file.display()
    );
    Ok(account)
}

fn read_stored(s: &AcmeSettings) -> Result<Option<Stored>, AcmeError> {
    let bytes = match std::fs::read(&s.account_file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AcmeError::File {
                what: "ACME account file",
                path: s.account_file.display().to_string(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AcmeError::Account {
            path: s.account_file.display().to_string(),
            detail: e.to_string(),
        })
}

/// Whether an error says the CA does not know the account (e.g. a test CA restarted).
pub fn is_unknown_account(e: &AcmeError) -> bool {
    matches!(e, AcmeError::Acme(instant_acme::Error::Api(p))
        if p.r#type.as_deref() == Some(ACCOUNT_DOES_NOT_EXIST))
}
