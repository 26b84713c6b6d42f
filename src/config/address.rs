//! The server address operators hand to clients: `smp://fingerprint[:password]@hosts[:port]`.

use std::fmt;

/// The host printed when none is configured (the operator substitutes the real one).
pub const PLACEHOLDER_HOST: &str = "<hostnames>";

/// The port clients assume when an address has none.
pub const DEFAULT_SMP_PORT: u16 = 5223;

/// A server address as printed by `init` and `start`.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// base64url of the SHA-256 of the CA certificate (with `=` padding).
    pub fingerprint: String,
    /// The queue creation password, if one is required.
    pub password: Option<String>,
    /// Host list as configured (`host1,host2`), printed verbatim.
    pub hosts: String,
    /// Port text; empty means the default port and prints nothing.
    pub port: String,
}

impl ServerAddress {
    /// The address `start` prints: the port text is omitted only when the ports are exactly
    /// the default `5223`, otherwise the configured port list is appended as the reference does
    /// (e.g. `@host:5223,443`).
    pub fn for_start(
        fingerprint: &str,
        password: Option<&str>,
        hosts: &str,
        ports: &[u16],
    ) -> ServerAddress {
        let port = if ports == [DEFAULT_SMP_PORT] {
            String::new()
        } else {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        ServerAddress {
            fingerprint: fingerprint.to_string(),
            password: password.map(str::to_string),
            hosts: hosts.to_string(),
            port,
        }
    }

    /// The address `init` prints: never a port.
    pub fn for_init(fingerprint: &str, password: Option<&str>, hosts: &str) -> ServerAddress {
        ServerAddress {
            fingerprint: fingerprint.to_string(),
            password: password.map(str::to_string),
            hosts: hosts.to_string(),
            port: String::new(),
        }
    }
}

impl ServerAddress {
    /// Append an onion host after the public ones; with `onion_only` the onion host replaces
    /// them (nothing else is reachable).
    pub fn add_onion_host(&mut self, onion: Option<&str>, onion_only: bool) {
        let Some(onion) = onion.filter(|o| !o.is_empty()) else {
            return;
        };
        if onion_only || self.hosts.is_empty() {
            self.hosts = onion.to_string();
        } else if !self.hosts.split(',').any(|h| h == onion) {
            self.hosts = format!("{},{onion}", self.hosts);
        }
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "smp://{}", self.fingerprint)?;
        if let Some(pw) = &self.password {
            write!(f, ":{pw}")?;
        }
        write!(f, "@{}", self.hosts)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password grants queue creation: keep it out of debug output.
        f.debug_struct("ServerAddress")
            .field("fingerprint", &self.fingerprint)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("hosts", &self.hosts)
            .field("port", &self.port)
            .finish()
    }
}

/// Whether `s` is a valid server password: non-empty, no whitespace or control characters,
/// and none of `@`, `:`, `/` (they would break the address).
pub fn is_valid_password(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '@' | ':' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "d5fcsc7hhtPpexYUbI2XPxDbyU2d3WsVmROimcL90ss=";

    #[test]
    fn init_address_as_in_the_guide() {
        let a = ServerAddress::for_init(
            FP,
            Some("V8ONoJ6ICwnrZnTC_QuSHfCEYq53uLaJKQ_oIC6-ve8="),
            PLACEHOLDER_HOST,
        );
        assert_eq!(
            a.to_string(),
            "smp://d5fcsc7hhtPpexYUbI2XPxDbyU2d3WsVmROimcL90ss=:V8ONoJ6ICwnrZnTC_QuSHfCEYq53uLaJKQ_oIC6-ve8=@<hostnames>"
        );
        assert_eq!(
            ServerAddress::for_init(FP, None, "smp.example.com").to_string(),
            format!("smp://{FP}@smp.example.com")
        );
    }

    #[test]
    fn start_address_ports() {
        assert_eq!(
            ServerAddress::for_start(FP, None, "h", &[5223]).to_string(),
            format!("smp://{FP}@h")
        );
        assert_eq!(
            ServerAddress::for_start(FP, Some("pw"), "h,x.onion", &[5223, 443]).to_string(),
            format!("smp://{FP}:pw@h,x.onion:5223,443")
        );
        assert_eq!(
            ServerAddress::for_start(FP, None, "h", &[443]).to_string(),
            format!("smp://{FP}@h:443")
        );
    }

    #[test]
    fn debug_hides_password() {
        let a = ServerAddress::for_init(FP, Some("secret"), "h");
        assert!(!format!("{a:?}").contains("secret"));
    }

    #[test]
    fn passwords() {
        assert!(is_valid_password("test"));
        assert!(is_valid_password(
            "V8ONoJ6ICwnrZnTC_QuSHfCEYq53uLaJKQ_oIC6-ve8="
        ));
        for bad in ["", "a b", "a@b", "a:b", "a/b", "a\tb"] {
            assert!(!is_valid_password(bad), "{bad:?}");
        }
    }
}
