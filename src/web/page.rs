//! The information site, generated at start into `[WEB] static_path`: the index page (what
//! this server keeps, for how long, who runs it), the SimpleX link pages and the
//! `.well-known` files that let the apps open those links. Our own templates and style.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{Config, Contacts, Entity, Information};

/// Paths of SimpleX links that the apps open (`/contact#...`, `/a#...` etc.).
pub const LINK_PATHS: &[&str] = &["contact", "invitation", "a", "c", "g", "r", "i"];

/// The iOS app that handles links on this site (Apple team + bundle ID).
const IOS_APP_ID: &str = "5NN7GUYB6T.chat.simplex.app";
/// The Android app that handles links on this site, and its signing certificate fingerprints.
const ANDROID_PACKAGE: &str = "chat.simplex.app";
const ANDROID_CERT_SHA256: &[&str] = &[
    "5E:3E:DC:C2:00:FB:A8:D5:F4:88:F3:CA:4C:32:5B:05:78:C5:6A:9C:03:A1:CC:B5:92:9C:D7:5C:7E:57:E2:4D",
    "3C:52:C4:FD:3C:AD:1C:07:C9:B0:0A:70:80:E3:58:FA:B9:FE:FC:B8:AF:5A:EC:14:77:65:F1:6D:0F:21:AD:85",
    "AE:C1:95:DC:FD:46:14:BD:3A:91:EC:26:D1:D5:14:C8:75:71:C5:CC:8D:CF:48:08:3F:92:83:14:3C:A2:B9:A6",
];

/// Everything the index page shows.
#[derive(Clone, Debug)]
pub struct PageInfo {
    /// `smp://fingerprint@host` (never with the queue-creation password).
    pub server_address: String,
    /// Queues are saved to the store log and restored at restart.
    pub persistent: bool,
    /// Messages are deleted after this many days.
    pub message_expiry_days: Option<u64>,
    /// Whether new queues may be created at all.
    pub new_queues: bool,
    /// Creating queues needs a password.
    pub password_required: bool,
    /// `[INFORMATION]`.
    pub information: Information,
    /// The onion address, when an onion service runs (filled by the onion service).
    pub onion_host: Option<String>,
}

impl PageInfo {
    /// From the configuration and the identity fingerprint (base64url).
    pub fn from_config(c: &Config, fingerprint: &str, onion_host: Option<String>) -> Self {
        PageInfo {
            server_address: format!("smp://{fingerprint}@{}", c.transport.host),
            persistent: c.store_log.enable,
            message_expiry_days: c.store_log.message_ttl_secs().map(|s| s / 86400),
            new_queues: c.auth.new_queues,
            password_required: c.auth.create_password.is_some(),
            information: c.information.clone(),
            onion_host,
        }
    }
}

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link only for web and SimpleX URIs; anything else is shown as text.
fn link(uri: &str) -> String {
    let safe = ["https://", "http://", "simplex:", "mailto:"]
        .iter()
        .any(|p| uri.starts_with(p));
    if safe {
        format!("<a href=\"{0}\">{0}</a>", esc(uri))
    } else {
        esc(uri)
    }
}

fn page(title: &str, body: &str, script: Option<&str>) -> String {
    let script = script
        .map(|s| format!("<script src=\"/{s}\"></script>\n"))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/site.css\">\n</head>\n<body>\n\
         <header><span class=\"mark\">&#9679;</span> SMP relay</header>\n<main>\n{body}</main>\n\
         <footer>A SimpleX Messaging Protocol relay. Messages pass through; nothing here knows who talks to whom.</footer>\n\
         {script}</body>\n</html>\n",
        esc(title)
    )
}

fn row(out: &mut String, name: &str, value_html: &str) {
    let _ = writeln!(out, "<tr><th>{}</th><td>{value_html}</td></tr>", esc(name));
}

fn entity(e: &Entity) -> String {
    match &e.country {
        Some(c) => format!("{} ({})", esc(&e.name), esc(c)),
        None => esc(&e.name),
    }
}

fn contacts(c: &Contacts) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &c.simplex {
        parts.push(format!("SimpleX: {}", link(s)));
    }
    if let Some(e) = &c.email {
        parts.push(format!("email: {}", link(&format!("mailto:{e}"))));
    }
    if let Some(p) = &c.pgp {
        parts.push(format!(
            "PGP key: {} ({})",
            link(&p.key_uri),
            esc(&p.fingerprint)
        ));
    }
    parts.join("<br>")
}

/// The index page.
pub fn index_html(p: &PageInfo) -> String {
    let mut b = String::new();
    b.push_str("<h1>SimpleX relay server</h1>\n<p class=\"lead\">This server relays messages for SimpleX Chat users. Add it in the app under <em>Network &amp; servers</em>.</p>\n");
    let _ = writeln!(
        b,
        "<section><h2>Server address</h2><p class=\"addr\"><code>{}</code></p>",
        esc(&p.server_address)
    );
    if let Some(onion) = &p.onion_host {
        let _ = writeln!(b, "<p>Onion address: <code>{}</code></p>", esc(onion));
    }
    b.push_str("</section>\n<section><h2>How it is run</h2><table>\n");
    row(
        &mut b,
        "Queue persistence",
        if p.persistent {
            "Queues are saved and survive restarts."
        } else {
            "Queues are kept in memory only and lost at restart."
        },
    );
    let expiry = match p.message_expiry_days {
        Some(d) => format!("Undelivered messages are deleted after {d} days."),
        None => "Undelivered messages are kept until delivered.".into(),
    };
    row(&mut b, "Message expiry", &expiry);
    row(
        &mut b,
        "New queues",
        if !p.new_queues {
            "Not allowed."
        } else if p.password_required {
            "Need the server password (ask the operator)."
        } else {
            "Anyone may create queues."
        },
    );
    b.push_str("</table></section>\n");

    let i = &p.information;
    let mut info = String::new();
    if let Some(o) = &i.operator {
        row(&mut info, "Operator", &entity(o));
    }
    if let Some(w) = &i.website {
        row(&mut info, "Website", &link(w));
    }
    if let Some(c) = &i.server_country {
        row(&mut info, "Server country", &esc(c));
    }
    if let Some(h) = &i.hosting {
        row(&mut info, "Hosting provider", &entity(h));
    }
    if let Some(t) = i.hosting_type {
        row(&mut info, "Hosting type", t.as_str());
    }
    if let Some(c) = &i.admin_contacts {
        row(&mut info, "Administrator", &contacts(c));
    }
    if let Some(c) = &i.complaints_contacts {
        row(&mut info, "Complaints", &contacts(c));
    }
    if let Some(u) = &i.usage_conditions {
        row(&mut info, "Usage conditions", &link(u));
        if let Some(a) = &i.condition_amendments {
            row(&mut info, "Amendments", &link(a));
        }
    }
    if let Some(s) = &i.source_code {
        row(&mut info, "Source code", &link(s));
    }
    if !info.is_empty() {
        let _ = writeln!(
            b,
            "<section><h2>Operator</h2><table>\n{info}</table></section>"
        );
    }
    page("SimpleX relay server", &b, None)
}

/// The page behind SimpleX links: shows the link and offers to open it in the app.
pub fn link_html() -> String {
    let body = "<h1>Open in SimpleX Chat</h1>\n\
        <p class=\"lead\" id=\"what\">Someone shared a SimpleX link with you.</p>\n\
        <p><a class=\"button\" id=\"open\" href=\"#\">Open in the app</a></p>\n\
        <p>If the button does nothing, install SimpleX Chat, then paste this link into it:</p>\n\
        <p class=\"addr\"><code id=\"uri\">(no link in this address)</code></p>\n";
    page("SimpleX link", body, Some("link.js"))
}

const LINK_JS: &str = r#"(function () {
  var kinds = { contact: "a contact address", invitation: "a one-time invitation",
    a: "a contact address", c: "a one-time invitation", g: "a group link",
    r: "a relay link", i: "a one-time invitation" };
  var kind = location.pathname.split("/").filter(Boolean)[0] || "";
  var frag = location.hash;
  if (!frag) { return; }
  var uri = "simplex:/" + kind + frag;
  document.getElementById("uri").textContent = location.href;
  document.getElementById("open").setAttribute("href", uri);
  if (kinds[kind]) {
    document.getElementById("what").textContent = "Someone shared " + kinds[kind] + " with you.";
  }
})();
"#;

const SITE_CSS: &str = r#":root { --ink: #1b2430; --muted: #5b6675; --line: #d9e0e8; --accent: #0b6e99; --bg: #f6f8fb; }
@media (prefers-color-scheme: dark) {
  :root { --ink: #e8edf3; --muted: #9aa7b6; --line: #2c3947; --accent: #5cb8e6; --bg: #111820; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--bg); }
header { padding: 14px 24px; border-bottom: 1px solid var(--line); font-weight: 600; letter-spacing: .02em; }
header .mark { color: var(--accent); }
main { max-width: 760px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.9rem; margin: .4em 0 .2em; }
h2 { font-size: 1.15rem; margin: 1.6em 0 .5em; color: var(--accent); }
.lead { color: var(--muted); font-size: 1.05rem; }
section { border: 1px solid var(--line); border-radius: 10px; padding: 4px 18px 14px; margin: 18px 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 7px 8px; border-top: 1px solid var(--line); }
tr:first-child th, tr:first-child td { border-top: 0; }
th { width: 34%; font-weight: 600; color: var(--muted); }
code { font: 14px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
.addr { padding: 10px 12px; background: rgba(127,127,127,.08); border-radius: 8px; }
a { color: var(--accent); }
.button { display: inline-block; padding: 10px 20px; border-radius: 8px; background: var(--accent); color: #fff; text-decoration: none; font-weight: 600; }
footer { max-width: 760px; margin: 0 auto; padding: 8px 24px 32px; color: var(--muted); font-size: .9rem; }
"#;

fn apple_app_site_association() -> String {
    let components: Vec<serde_json::Value> = LINK_PATHS
        .iter()
        .flat_map(|p| [format!("/{p}"), format!("/{p}/*")])
        .map(|p| serde_json::json!({ "/": p }))
        .collect();
    let v = serde_json::json!({
        "applinks": { "details": [ { "appIDs": [IOS_APP_ID], "components": components } ] }
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn asset_links() -> String {
    let v = serde_json::json!([{
        "relation": ["delegate_permission/common.handle_all_urls"],
        "target": {
            "namespace": "android_app",
            "package_name": ANDROID_PACKAGE,
            "sha256_cert_fingerprints": ANDROID_CERT_SHA256,
        }
    }]);
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Write the whole site under `root` (created if needed); existing files are replaced.
pub fn generate(root: &Path, p: &PageInfo) -> std::io::Result<()> {
    let write = |rel: &str, data: &str| -> std::io::Result<()> {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, data)
    };
    write("index.html", &index_html(p))?;
    write("site.css", SITE_CSS)?;
    write("link.js", LINK_JS)?;
    let link = link_html();
    for kind in LINK_PATHS {
        write(&format!("{kind}/index.html"), &link)?;
    }
    write(
        "404.html",
        &page(
            "Not found",
            "<h1>Not found</h1><p><a href=\"/\">Server information</a></p>\n",
            None,
        ),
    )?;
    write(
        ".well-known/apple-app-site-association",
        &apple_app_site_association(),
    )?;
    write(".well-known/assetlinks.json", &asset_links())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Paths};

    #[test]
    fn index_shows_settings_and_information_escaped() {
        let c = Config::parse(
            "[INFORMATION]\nsource_code = https://example.com/src\noperator = A <b> & Co\noperator_country = DE\n[AUTH]\ncreate_password = secretpw\n[TRANSPORT]\nhost = smp.example.com\n",
            Paths::new("/c", "/l"),
        )
        .expect("valid");
        let p = PageInfo::from_config(&c, "FP", Some("abc.onion".into()));
        let html = index_html(&p);
        assert!(html.contains("smp://FP@smp.example.com"));
        assert!(!html.contains("secretpw"));
        assert!(html.contains("A &lt;b&gt; &amp; Co (DE)"));
        assert!(html.contains("Need the server password"));
        assert!(html.contains("abc.onion"));
        assert!(html.contains("<a href=\"https://example.com/src\">"));
        assert!(!link("javascript:alert(1)").contains("href"));
    }

    #[test]
    fn well_known_files_are_json() {
        let a: serde_json::Value =
            serde_json::from_str(&apple_app_site_association()).expect("json");
        assert_eq!(a["applinks"]["details"][0]["appIDs"][0], IOS_APP_ID);
        let l: serde_json::Value = serde_json::from_str(&asset_links()).expect("json");
        assert_eq!(l[0]["target"]["package_name"], ANDROID_PACKAGE);
    }
}
