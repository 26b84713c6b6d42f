//! HTTP/1.1 and HTTP/2 request handling of the information page: the fuzzed bytes are what a
//! client sends on the connection (over an in-memory duplex), served by the real handler with
//! hyper, then the client's side closes. A hang is a finding (libFuzzer's `-timeout`).
//! Input: one flags byte (bit 0: the connection is HTTPS), then the client's bytes.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use smp_server::web::certs::WebCerts;
use smp_server::web::http::{serve_connection, Site};
use smp_server_fuzz::scratch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Env {
    rt: tokio::runtime::Runtime,
    site: Arc<Site>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        // A small site like the generated one: a page, a style sheet, a nested file.
        let root = scratch("www");
        std::fs::create_dir_all(root.join("media")).expect("site dir");
        std::fs::write(
            root.join("index.html"),
            "<html><body>SMP server</body></html>\n".repeat(20),
        )
        .expect("index");
        std::fs::write(root.join("style.css"), "body { margin: 0 }\n").expect("css");
        std::fs::write(root.join("media").join("logo.svg"), "<svg/>").expect("svg");
        std::fs::write(root.join("404.html"), "not here").expect("404");
        let site = Arc::new(Site {
            root: Some(root),
            certs: WebCerts::new(smp_acme::challenges::Challenges::new()),
            https_port: Some(443),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Env { rt, site }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, request)) = data.split_first() else {
        return;
    };
    let env = env();
    env.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(serve_connection(
            server,
            env.site.clone(),
            flags & 1 == 1,
            smp_server::net::http::HttpTimeouts::default(),
            CancellationToken::new(),
        ));
        // Write and read at once: a response may be larger than the duplex buffer.
        let (mut rd, mut wr) = tokio::io::split(&mut client);
        let write = async {
            let _ = wr.write_all(request).await;
            let _ = wr.shutdown().await;
        };
        let mut out = Vec::new();
        let read = rd.read_to_end(&mut out);
        let _ = tokio::join!(write, read);
        drop(client);
        let _ = task.await;
    });
});
