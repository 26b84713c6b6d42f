//! `[INFORMATION]`: who runs the server, published on the information page and to clients.

use std::str::FromStr;

use crate::config::read::Reader;
use crate::config::ConfigError;

/// An operator or hosting provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    /// Organisation or person name.
    pub name: String,
    /// ISO 3166 alpha-2 country code, upper case.
    pub country: Option<String>,
}

/// A PGP key published for contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgpKey {
    /// Where the key can be downloaded.
    pub key_uri: String,
    /// The key's fingerprint.
    pub fingerprint: String,
}

/// Administrative or complaints contacts; present when at least one contact is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contacts {
    /// A SimpleX contact address.
    pub simplex: Option<String>,
    /// An email address.
    pub email: Option<String>,
    /// A PGP key (both URI and fingerprint must be set).
    pub pgp: Option<PgpKey>,
}

/// `hosting_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostingType {
    /// A virtual machine.
    Virtual,
    /// A dedicated server.
    Dedicated,
    /// An owned machine in a colocation facility.
    Colocation,
    /// Owned premises.
    Owned,
}

impl HostingType {
    /// The INI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HostingType::Virtual => "virtual",
            HostingType::Dedicated => "dedicated",
            HostingType::Colocation => "colocation",
            HostingType::Owned => "owned",
        }
    }
}

impl FromStr for HostingType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtual" => Ok(HostingType::Virtual),
            "dedicated" => Ok(HostingType::Dedicated),
            "colocation" => Ok(HostingType::Colocation),
            "owned" => Ok(HostingType::Owned),
            _ => Err(format!(
                "'{s}' is not a hosting type; use virtual, dedicated, colocation or owned"
            )),
        }
    }
}

/// `[INFORMATION]`: published on the information page and to clients.
///
/// The reference publishes nothing unless `source_code` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Information {
    /// `source_code`: URI of the (possibly modified) source, required by the AGPLv3.
    pub source_code: Option<String>,
    /// `usage_conditions`.
    pub usage_conditions: Option<String>,
    /// `condition_amendments` (only meaningful with `usage_conditions`).
    pub condition_amendments: Option<String>,
    /// `server_country`.
    pub server_country: Option<String>,
    /// `operator` and `operator_country`.
    pub operator: Option<Entity>,
    /// `website`.
    pub website: Option<String>,
    /// `admin_simplex`, `admin_email`, `admin_pgp`, `admin_pgp_fingerprint`.
    pub admin_contacts: Option<Contacts>,
    /// `complaints_simplex`, `complaints_email`, `complaints_pgp`, `complaints_pgp_fingerprint`.
    pub complaints_contacts: Option<Contacts>,
    /// `hosting` and `hosting_country`.
    pub hosting: Option<Entity>,
    /// `hosting_type`.
    pub hosting_type: Option<HostingType>,
}

impl Information {
    /// Whether any field other than `source_code` is set.
    pub fn has_details(&self) -> bool {
        self.usage_conditions.is_some()
            || self.server_country.is_some()
            || self.operator.is_some()
            || self.website.is_some()
            || self.admin_contacts.is_some()
            || self.complaints_contacts.is_some()
            || self.hosting.is_some()
            || self.hosting_type.is_some()
    }
}

/// Validate an ISO 3166 alpha-2 code as the reference does; returns it upper-cased.
pub fn country_code(s: &str) -> Option<String> {
    (s.len() == 2 && s.chars().all(|c| c.is_ascii_alphabetic())).then(|| s.to_ascii_uppercase())
}

const INFO: &str = "INFORMATION";

fn country(r: &Reader<'_>, key: &'static str) -> Result<Option<String>, ConfigError> {
    match r.text(INFO, key) {
        None => Ok(None),
        Some(v) => country_code(&v).map(Some).ok_or_else(|| {
            r.invalid(
                INFO,
                key,
                &v,
                "is not an ISO 3166 2-letter country code",
                format!("use e.g. {key} = DE"),
            )
        }),
    }
}

fn entity(
    r: &Reader<'_>,
    name_key: &'static str,
    country_key: &'static str,
) -> Result<Option<Entity>, ConfigError> {
    let country = country(r, country_key)?;
    Ok(r.text(INFO, name_key).map(|name| Entity { name, country }))
}

fn contacts(
    r: &Reader<'_>,
    simplex_key: &'static str,
    email_key: &'static str,
    pgp_key: &'static str,
    pgp_fp_key: &'static str,
) -> Result<Option<Contacts>, ConfigError> {
    let simplex = r.text(INFO, simplex_key);
    if let Some(link) = &simplex {
        let ok = ["simplex:", "https://", "http://"]
            .iter()
            .any(|p| link.starts_with(p));
        if !ok {
            return Err(r.invalid(
                INFO,
                simplex_key,
                link,
                "is not a SimpleX address",
                "paste the address as shown by the app (it starts with https:// or simplex:)",
            ));
        }
    }
    let email = r.text(INFO, email_key);
    let key_uri = r.text(INFO, pgp_key);
    let fingerprint = r.text(INFO, pgp_fp_key);
    let pgp = match (key_uri, fingerprint) {
        (Some(key_uri), Some(fingerprint)) => Some(PgpKey {
            key_uri,
            fingerprint,
        }),
        _ => None,
    };
    if simplex.is_none() && email.is_none() && pgp.is_none() {
        return Ok(None);
    }
    Ok(Some(Contacts {
        simplex,
        email,
        pgp,
    }))
}

pub(super) fn information(r: &Reader<'_>) -> Result<Information, ConfigError> {
    let hosting_type = match r.text(INFO, "hosting_type") {
        None => None,
        Some(v) => Some(v.parse::<HostingType>().map_err(|_| {
            r.invalid(
                INFO,
                "hosting_type",
                &v,
                "is not a hosting type",
                "use virtual, dedicated, colocation or owned",
            )
        })?),
    };
    Ok(Information {
        source_code: r.text(INFO, "source_code"),
        usage_conditions: r.text(INFO, "usage_conditions"),
        condition_amendments: r.text(INFO, "condition_amendments"),
        server_country: country(r, "server_country")?,
        operator: entity(r, "operator", "operator_country")?,
        website: r.text(INFO, "website"),
        admin_contacts: contacts(
            r,
            "admin_simplex",
            "admin_email",
            "admin_pgp",
            "admin_pgp_fingerprint",
        )?,
        complaints_contacts: contacts(
            r,
            "complaints_simplex",
            "complaints_email",
            "complaints_pgp",
            "complaints_pgp_fingerprint",
        )?,
        hosting: entity(r, "hosting", "hosting_country")?,
        hosting_type,
    })
}
