//! The layer rule (README.md "Layout"): the protocol core is sans-IO. Nothing under
//! src/proto, nor the codec and data types it builds on (wire, bitfield, manifest), may
//! reach for the I/O layer, a socket or the clock; `now` comes in as an argument, as in
//! quinn-proto. This reads the sources and names the file and line of every breach.
//!
//! Test code is exempt, since a virtual-time test needs one real `Instant` to start from:
//! an item under `#[cfg(test)]`, and a file such an item declares with `mod name;`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The sans-IO layers: `src/NAME.rs` and everything under `src/NAME/`.
const SANS_IO: [&str; 4] = ["proto", "wire", "bitfield", "manifest"];

/// What a sans-IO file must not name, and why.
const FORBIDDEN: [(&str, &str); 9] = [
    ("crate::net", "the I/O layer"),
    ("super::net", "the I/O layer"),
    ("mio", "the event loop's crate"),
    ("socket2", "the socket crate"),
    ("TcpStream", "a socket"),
    ("TcpListener", "a socket"),
    ("UdpSocket", "a socket"),
    ("Instant::now", "the clock: take `now` as an argument"),
    ("SystemTime::now", "the clock: take `now` as an argument"),
];

#[test]
fn sans_io_layers_use_no_net_no_sockets_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    for layer in SANS_IO {
        let (file, dir) = (src.join(format!("{layer}.rs")), src.join(layer));
        assert!(
            file.is_file() || dir.is_dir(),
            "neither {} nor {} exists: update SANS_IO",
            file.display(),
            dir.display()
        );
        if file.is_file() {
            files.push(file);
        }
        rust_files(&dir, &mut files);
    }
    assert!(files.iter().any(|f| f.starts_with(src.join("proto"))));
    let breaches = check(root, &files);
    assert!(
        breaches.is_empty(),
        "sans-IO code reaches for I/O or the clock:\n{}",
        breaches.join("\n")
    );
}

#[test]
fn check_names_file_and_line_and_exempts_test_code() {
    let root = std::env::temp_dir().join(format!("tfttp-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let write = |name: &str, text: &str| {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    };
    let files = vec![
        write(
            "core/mod.rs",
            "//! Never calls Instant::now (a comment may say so).\n\
             use std::net::SocketAddr;\n\
             use crate::net::Driver;\n\
             const NAME: &str = \"mio\";\n\
             mod deep;\n\
             #[cfg(test)]\n\
             mod tests;\n",
        ),
        write("core/tests.rs", "fn t0() { let _ = Instant::now(); }\n"),
        write(
            "core/deep.rs",
            "fn f() {}\n\
             #[cfg(test)]\n\
             mod tests {\n\
             \x20   fn t0() { let _ = (Instant::now(), '{', \"}\"); }\n\
             \x20   const J: &str = r#\"{\"mio\"\"#;\n\
             }\n\
             #[cfg(test)]\n\
             mod helpers;\n\
             fn g() { let _ = std::time::SystemTime::now(); }\n\
             fn h(_: mio::Token) {}\n",
        ),
        write("core/deep/helpers.rs", "fn t() -> TcpStream { todo!() }\n"),
    ];
    let breaches = check(&root, &files);
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(
        breaches,
        [
            "core/mod.rs:3: `crate::net`, the I/O layer",
            "core/deep.rs:9: `SystemTime::now`, the clock: take `now` as an argument",
            "core/deep.rs:10: `mio`, the event loop's crate",
        ]
    );
}

/// Every `.rs` file under `dir`, at any depth.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// One line per breach, ``path:line: `pattern`, why``, with paths relative to `root`.
fn check(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let code: Vec<Vec<String>> = files
        .iter()
        .map(|f| blank_comments_and_literals(&std::fs::read_to_string(f).unwrap()))
        .collect();
    // Files declared by test-only items, and the files those declare, to a fixed point.
    let mut test_files = BTreeSet::new();
    loop {
        let before = test_files.len();
        for (f, lines) in files.iter().zip(&code) {
            let all = test_files.contains(f);
            for (name, in_test) in mod_decls(lines) {
                if all || in_test {
                    test_files.extend(child_files(f, &name));
                }
            }
        }
        if test_files.len() == before {
            break;
        }
    }
    let mut out = Vec::new();
    for (f, lines) in files.iter().zip(&code) {
        if test_files.contains(f) {
            continue;
        }
        let test = test_lines(lines);
        for (i, line) in lines.iter().enumerate() {
            for (pat, why) in FORBIDDEN {
                if !test[i] && contains_path(line, pat) {
                    let rel = f.strip_prefix(root).unwrap_or(f).display();
                    out.push(format!("{rel}:{}: `{pat}`, {why}", i + 1));
                }
            }
        }
    }
    out
}

/// `pat` in `line` with no identifier character either side (so `mio` is not `premio`).
fn contains_path(line: &str, pat: &str) -> bool {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    line.match_indices(pat).any(|(at, _)| {
        !ident(line[..at].chars().next_back()) && !ident(line[at + pat.len()..].chars().next())
    })
}

/// Which lines belong to an item under `#[cfg(test)]`: from the attribute to the `;` or
/// the closing brace that ends the item.
fn test_lines(lines: &[String]) -> Vec<bool> {
    let mut out = vec![false; lines.len()];
    let mut depth: Option<i32> = None; // Some while inside a test item; 0 until its `{`
    for (i, line) in lines.iter().enumerate() {
        let mut rest = line.as_str();
        if depth.is_none() {
            match line.find("#[cfg(test)]") {
                Some(at) => {
                    depth = Some(0);
                    rest = &line[at + "#[cfg(test)]".len()..];
                }
                None => continue,
            }
        }
        out[i] = true;
        let d = depth.as_mut().unwrap();
        let entered = *d > 0;
        for c in rest.chars() {
            match c {
                '{' => *d += 1,
                '}' => *d -= 1,
                _ => {}
            }
        }
        let ends_without_body = !entered && *d == 0 && rest.trim_end().ends_with(';');
        if ends_without_body || (entered || rest.contains('{')) && *d <= 0 {
            depth = None;
        }
    }
    out
}

/// `mod name;` declarations (out-of-line modules), each with whether it is test-only.
fn mod_decls(lines: &[String]) -> Vec<(String, bool)> {
    let test = test_lines(lines);
    let mut out = Vec::new();
    for (line, in_test) in lines.iter().zip(test) {
        let t = line.trim();
        let t = t.strip_prefix("#[cfg(test)]").unwrap_or(t).trim();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .unwrap_or(t);
        if let Some(name) = t.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            out.push((name.trim().to_string(), in_test));
        }
    }
    out
}

/// The files `mod name;` in `parent` may load: `dir/name.rs` or `dir/name/mod.rs`, where
/// `dir` is the parent's own directory for `mod.rs`/`lib.rs`, else one named after it.
fn child_files(parent: &Path, name: &str) -> [PathBuf; 2] {
    let stem = parent.file_stem().unwrap().to_str().unwrap();
    let dir = if matches!(stem, "mod" | "lib" | "main") {
        parent.parent().unwrap().to_path_buf()
    } else {
        parent.with_extension("")
    };
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
}

/// The source split into lines, with comments and the insides of string and character
/// literals blanked, so neither a doc comment that mentions `Instant::now` nor a brace in a
/// string can mislead the checks.
fn blank_comments_and_literals(text: &str) -> Vec<String> {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |i: usize| i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r' && !(ident(i) && c[i - 1] != 'b') && matches!(next, Some('"' | '#')) {
            // r"…", r#"…"#, br"…": ends at a quote followed by as many hashes.
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let delim: String = std::iter::repeat_n('#', hashes).collect();
            let end: Vec<char> = format!("\"{delim}").chars().collect();
            out.push_str(&format!("r{delim}\""));
            i += 2 + hashes;
            while i < c.len() && !c[i..].starts_with(&end) {
                blank(&mut out, c[i]);
                i += 1;
            }
            if i < c.len() {
                out.extend(&end);
                i += end.len();
            }
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                let n = if c[i] == '\\' { 2 } else { 1 };
                for &ch in &c[i..(i + n).min(c.len())] {
                    blank(&mut out, ch);
                }
                i += n;
            }
            if i < c.len() {
                out.push('"');
                i += 1;
            }
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A character literal ('{', '\n', '\''), not a lifetime ('a).
            out.push('\'');
            i += 1;
            let start = i;
            while i < c.len() && !(c[i] == '\'' && (i > start + 1 || c[start] != '\\')) {
                blank(&mut out, c[i]);
                i += 1;
            }
            if i < c.len() {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out.lines().map(String::from).collect()
}
