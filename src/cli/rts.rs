//! GHC runtime options on the command line (`smp-server start +RTS -N -RTS`): the reference is
//! a Haskell program and its systemd unit, Docker entrypoint and the operators' guide pass
//! them. They mean nothing here, so they are removed before parsing, with a one-line notice,
//! by GHC's own rules: `+RTS` starts runtime options, `-RTS` ends them (or the end of the
//! line does), `--RTS` ends runtime processing and is itself dropped.

use std::ffi::OsString;

/// The arguments for our parser, and the runtime options that were removed.
pub fn strip(args: impl IntoIterator<Item = OsString>) -> (Vec<OsString>, Vec<OsString>) {
    let (mut keep, mut rts) = (Vec::new(), Vec::new());
    let mut in_rts = false;
    let mut done = false;
    for (i, a) in args.into_iter().enumerate() {
        // the program name is never an option
        if i == 0 || done {
            keep.push(a);
            continue;
        }
        match a.to_str() {
            Some("--RTS") => done = true,
            Some("+RTS") => {
                in_rts = true;
                rts.push(a);
            }
            Some("-RTS") if in_rts => {
                in_rts = false;
                rts.push(a);
            }
            _ if in_rts => rts.push(a),
            _ => keep.push(a),
        }
    }
    (keep, rts)
}

/// The notice printed when runtime options were removed.
pub fn notice(rts: &[OsString]) -> String {
    let shown: Vec<String> = rts
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!(
        "Note: ignoring GHC runtime options (this server is not a Haskell program): {}",
        shown.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &[&str]) -> (Vec<String>, Vec<String>) {
        let (k, r) = strip(a.iter().map(OsString::from));
        let s = |v: Vec<OsString>| {
            v.into_iter()
                .map(|x| x.into_string().expect("utf8"))
                .collect()
        };
        (s(k), s(r))
    }

    #[test]
    fn ghc_rules() {
        assert_eq!(
            run(&["smp-server", "start", "+RTS", "-N", "-RTS"]),
            (
                vec!["smp-server".into(), "start".into()],
                vec!["+RTS".into(), "-N".into(), "-RTS".into()]
            )
        );
        // a trailing +RTS section without -RTS
        let (k, r) = run(&["smp-server", "start", "+RTS", "-N", "-A16m"]);
        assert_eq!((k.len(), r.len()), (2, 3));
        // options after -RTS belong to the program again; several sections
        let (k, _) = run(&[
            "x",
            "+RTS",
            "-N",
            "-RTS",
            "start",
            "+RTS",
            "-s",
            "-RTS",
            "--skip-warnings",
        ]);
        assert_eq!(k, vec!["x", "start", "--skip-warnings"]);
        // --RTS: the rest is the program's, even +RTS
        let (k, r) = run(&["x", "start", "--RTS", "+RTS"]);
        assert_eq!(
            (k, r.len()),
            (vec!["x".to_string(), "start".into(), "+RTS".into()], 0)
        );
        // nothing to strip
        assert_eq!(run(&["x", "start"]).1.len(), 0);
    }
}
