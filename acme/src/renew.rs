//! The renewer: obtains a certificate when there is none, renews it when due (by ARI when the
//! CA offers it, else at two thirds of its lifetime), retries failures with exponential backoff,
//! and hands every new certificate to the caller for a hot swap.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{Account, CertificateIdentifier};
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::account;
use crate::certinfo::CertInfo;
use crate::challenges::Challenges;
use crate::files::write_atomic;
use crate::issue::{self, Certificate};
use crate::settings::AcmeSettings;
use crate::AcmeError;

/// A certificate just written to disk, for the caller to load.
pub struct Issued {
    /// The chain, leaf first (PEM).
    pub chain_pem: String,
    /// The private key (PEM).
    pub key_pem: String,
    /// Its validity and names.
    pub info: CertInfo,
}

/// Called with every new certificate, after it is written to disk.
pub type OnIssued = Arc<dyn Fn(&Issued) + Send + Sync>;

/// Lets other parts (a signal handler, the control port) ask for a renewal now.
#[derive(Clone, Debug)]
pub struct RenewerHandle {
    trigger: Arc<Notify>,
}

impl RenewerHandle {
    /// Renew at once, whatever the current certificate's validity.
    pub fn renew_now(&self) {
        self.trigger.notify_one();
    }
}

/// The long-running renewal service.
pub struct Renewer {
    settings: AcmeSettings,
    challenges: Arc<Challenges>,
    on_issued: OnIssued,
    trigger: Arc<Notify>,
    account: Option<Account>,
    /// The current certificate's ARI identifier, when the CA's ARI answered for it.
    ari_replaces: Option<CertificateIdentifier<'static>>,
}

impl Renewer {
    /// A renewer answering challenges through `challenges`.
    pub fn new(settings: AcmeSettings, challenges: Arc<Challenges>, on_issued: OnIssued) -> Self {
        Renewer {
            settings,
            challenges,
            on_issued,
            trigger: Arc::new(Notify::new()),
            account: None,
            ari_replaces: None,
        }
    }

    /// A handle to force a renewal.
    pub fn handle(&self) -> RenewerHandle {
        RenewerHandle {
            trigger: self.trigger.clone(),
        }
    }

    /// Run until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let mut forced = false;
        loop {
            let current = self.current();
            let now = SystemTime::now();
            let due = match (&current, forced) {
                (Some(info), false) => self.due_time(info).await,
                _ => now,
            };
            let wait = if due <= now {
                match self.obtain(current.as_ref()).await {
                    Ok(()) => {
                        failures = 0;
                        forced = false;
                        continue;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let delay = backoff(&self.settings, failures);
                        tracing::error!(
                            "ACME: could not obtain a certificate for {}: {e}. Retrying in {} s (attempt {failures}).",
                            self.settings.domains.join(", "),
                            delay.as_secs()
                        );
                        delay
                    }
                }
            } else {
                let until_due = due.duration_since(now).unwrap_or_default();
                tracing::info!(
                    "ACME: certificate for {} is valid; renewal due at {}",
                    self.settings.domains.join(", "),
                    rfc3339(due)
                );
                until_due.min(jittered(self.settings.check_interval))
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.trigger.notified() => {
                    tracing::info!("ACME: renewal requested");
                    forced = true;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The certificate on disk, if it is readable and names all our domains.
    fn current(&self) -> Option<CertInfo> {
        let pem = std::fs::read(&self.settings.cert_file).ok()?;
        let info = match CertInfo::from_pem_chain(&pem) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(
                    "ACME: {} is not a usable certificate ({e}); obtaining a new one",
                    self.settings.cert_file.display()
                );
                return None;
            }
        };
        if !info.covers(&self.settings.domains) {
            tracing::info!(
                "ACME: {} does not name all of {}; obtaining a new certificate",
                self.settings.cert_file.display(),
                self.settings.domains.join(", ")
            );
            return None;
        }
        Some(info)
    }

    /// When to renew `info`: inside the CA's ARI window when it has one, else at 2/3 of life.
    async fn due_time(&mut self, info: &CertInfo) -> SystemTime {
        let fallback = info.two_thirds().min(info.not_after);
        self.ari_replaces = None;
        let Some(id) = info.ari_id.clone() else {
            return fallback;
        };
        let account = match self.account().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("ACME: no account for renewal information: {e}");
                return fallback;
            }
        };
        match account.renewal_info(&id).await {
            Ok((ari, _retry_after)) => {
                let start = SystemTime::from(ari.suggested_window.start);
                let end = SystemTime::from(ari.suggested_window.end);
                let span = end.duration_since(start).unwrap_or_default();
                let at = start + span.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
                tracing::debug!(
                    "ACME: renewal window from the CA: {} .. {}",
                    rfc3339(start),
                    rfc3339(end)
                );
                self.ari_replaces = Some(id);
                at
            }
            Err(instant_acme::Error::Unsupported(_)) => fallback,
            Err(e) => {
                tracing::debug!("ACME: renewal information unavailable: {e}");
                fallback
            }
        }
    }

    async fn account(&mut self) -> Result<Account, AcmeError> {
        if let Some(a) = &self.account {
            return Ok(a.clone());
        }
        let a = account::load_or_create(&self.settings).await?;
        self.account = Some(a.clone());
        Ok(a)
    }

    /// Obtain a certificate (trying each configured challenge type), store it, hand it over.
    async fn obtain(&mut self, current: Option<&CertInfo>) -> Result<(), AcmeError> {
        let replaces = if current.is_some() {
            self.ari_replaces.take()
        } else {
            None
        };
        let cert = self.order_any(replaces).await?;
        let info = CertInfo::from_pem_chain(cert.chain_pem.as_bytes())?;
        let s = &self.settings;
        write_atomic(
            &s.key_file,
            cert.key_pem.as_bytes(),
            true,
            "certificate key file",
        )?;
        write_atomic(
            &s.cert_file,
            cert.chain_pem.as_bytes(),
            false,
            "certificate file",
        )?;
        tracing::info!(
            "ACME: certificate for {} issued, valid until {}; written to {} and {}",
            s.domains.join(", "),
            rfc3339(info.not_after),
            s.cert_file.display(),
            s.key_file.display()
        );
        (self.on_issued)(&Issued {
            chain_pem: cert.chain_pem,
            key_pem: cert.key_pem,
            info,
        });
        Ok(())
    }

    async fn order_any(
        &mut self,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<Certificate, AcmeError> {
        let mut last = None;
        for &mode in self.settings.challenge.attempts() {
            let account = self.account().await?;
            let result = issue::issue(
                &account,
                &self.settings,
                &self.challenges,
                mode,
                replaces.clone(),
            )
            .await;
            let result = match result {
                Err(e) if account::is_unknown_account(&e) => {
                    tracing::warn!(
                        "ACME: the CA does not know the stored account; creating a new one"
                    );
                    let account = account::create(&self.settings).await?;
                    self.account = Some(account.clone());
                    issue::issue(&account, &self.settings, &self.challenges, mode, None).await
                }
                other => other,
            };
            match result {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!("ACME: {} validation did not succeed: {e}", mode.as_str());
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(AcmeError::Certificate(
            "no challenge type configured".into(),
        )))
    }
}

/// Exponential backoff: `retry_delay * 2^(failures-1)`, capped, with ±10% jitter.
pub fn backoff(s: &AcmeSettings, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let d = s.retry_delay.saturating_mul(1u32 << exp).min(s.max_backoff);
    jittered(d)
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.9..1.1))
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut s = AcmeSettings::new(vec![], "a".into(), "c".into(), "k".into());
        s.retry_delay = Duration::from_secs(10);
        s.max_backoff = Duration::from_secs(100);
        let within = |d: Duration, secs: f64| {
            let x = d.as_secs_f64();
            x >= secs * 0.9 && x <= secs * 1.1
        };
        assert!(within(backoff(&s, 1), 10.0));
        assert!(within(backoff(&s, 2), 20.0));
        assert!(within(backoff(&s, 4), 80.0));
        assert!(within(backoff(&s, 5), 100.0));
        assert!(within(backoff(&s, 1000), 100.0));
    }
}
