//! One certificate client per `web.crt`: when another one (Caddy, certbot) already manages the
//! [WEB] certificate, our ACME must not write it too, or the two overwrite each other.
//!
//! A certificate is taken as managed elsewhere when its path is a symlink (certbot's `live/`
//! files are) or lies outside the configuration directory (Caddy's data directory, the
//! reference container's `/certificates`). Our ACME writes plain files in the configuration
//! directory (`web.crt`, `web.key`), so it never trips this rule itself.

use std::path::Path;

/// Why `cert` looks managed by another client, or `None` when it is ours to manage.
pub fn managed_elsewhere(cert: &Path, cfg_dir: &Path) -> Option<String> {
    if std::fs::symlink_metadata(cert).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = std::fs::read_link(cert)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        return Some(format!(
            "{} is a symlink to {target} (as certbot makes them)",
            cert.display()
        ));
    }
    let inside = match (cert.parent(), std::fs::canonicalize(cfg_dir)) {
        (Some(dir), Ok(cfg)) => std::fs::canonicalize(dir)
            .map(|d| d.starts_with(&cfg))
            .unwrap_or_else(|_| dir.starts_with(cfg_dir)),
        _ => true,
    };
    (!inside).then(|| {
        format!(
            "{} is outside {} (a directory of Caddy, certbot or a container)",
            cert.display(),
            cfg_dir.display()
        )
    })
}

/// The operator's message when [ACME] is on but the certificate is managed elsewhere.
pub fn acme_off_message(reason: &str) -> String {
    format!(
        "ACME stays off: [ACME] enable = on, but the [WEB] certificate is managed by another \
         client: {reason}. Only one client may write it. Set [ACME] enable = off to keep that \
         client, or point [WEB] cert and key at web.crt and web.key in the configuration \
         directory to let this server manage them (docs/acme.md)."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_file_symlink_and_outside_paths() {
        let tmp = tempfile::tempdir().expect("tmp");
        let cfg = tmp.path().join("etc");
        std::fs::create_dir_all(&cfg).expect("mkdir");
        let own = cfg.join("web.crt");
        assert_eq!(managed_elsewhere(&own, &cfg), None, "not yet there: ours");
        std::fs::write(&own, b"pem").expect("write");
        assert_eq!(managed_elsewhere(&own, &cfg), None);

        let live = tmp.path().join("letsencrypt/live/smp.example.com");
        std::fs::create_dir_all(&live).expect("mkdir");
        std::fs::write(live.join("fullchain.pem"), b"pem").expect("write");
        let link = cfg.join("linked.crt");
        std::os::unix::fs::symlink(live.join("fullchain.pem"), &link).expect("symlink");
        let why = managed_elsewhere(&link, &cfg).expect("a symlink");
        assert!(why.contains("symlink"), "{why}");

        let caddy = tmp.path().join("caddy/certificates/smp.example.com.crt");
        let why = managed_elsewhere(&caddy, &cfg).expect("outside");
        assert!(why.contains("outside"), "{why}");
        assert!(acme_off_message(&why).contains("[ACME] enable = off"));
    }
}
