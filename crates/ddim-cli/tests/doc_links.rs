//! Every relative link in the project's Markdown points at something that exists.
//!
//! Scans every `*.md` file of the repository (README.md, BENCHMARKS.md, RELIABILITY.md, docs/,
//! tools/, fuzz/, crates/*; hidden folders and `target` are skipped) for inline links and
//! images, `[text](target)` and `![alt](target)`, and for reference definitions,
//! `[label]: target`. Code blocks (fenced with ``` or ~~~), code spans and HTML comments are
//! skipped; so are targets with a scheme (`https:`, `mailto:`, …).
//!
//! Checked for each relative target:
//! - the file or folder exists, relative to the Markdown file, and lies inside the repository;
//! - an anchor (`file.md#anchor`, or `#anchor` in the same file) names a heading of that
//!   Markdown file as GitHub renders its id (lower-cased; letters, combining marks, ASCII
//!   digits, `_` and `-` kept, spaces to `-`, other characters dropped; a repeated heading gets
//!   `-1`, `-2`, …) or an explicit `<a id="…">`/`<a name="…">`. Anchors into non-Markdown files
//!   (`file.rs#L10`) are not checked.
//!
//! A small scanner written for this, not a CommonMark parser: indented (4-space) code blocks
//! and setext headings are not recognised; the project's Markdown uses neither.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// One link found in a Markdown file: its 1-based line and its target as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    line: usize,
    target: String,
}

/// The repository root: this crate is `crates/ddim-cli`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `*.md` file under `dir`, skipping hidden folders and `target`.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The line's text with code spans and HTML comments blanked out (replaced by spaces, so
/// that positions stay put). `in_comment` carries an open `<!--` over to the next line.
fn mask_line(line: &str, in_comment: &mut bool) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if *in_comment {
            if chars[i..].starts_with(&['-', '-', '>']) {
                *in_comment = false;
                out.push_str("   ");
                i += 3;
            } else {
                out.push(' ');
                i += 1;
            }
            continue;
        }
        if chars[i..].starts_with(&['<', '!', '-', '-']) {
            *in_comment = true;
            out.push_str("    ");
            i += 4;
            continue;
        }
        if chars[i] == '\\' && i + 1 < chars.len() {
            // An escaped character is literal text: keep it out of the link syntax.
            out.push_str("  ");
            i += 2;
            continue;
        }
        if chars[i] == '`' {
            let run = chars[i..].iter().take_while(|&&c| c == '`').count();
            // The span closes at the next run of exactly `run` backticks.
            let mut j = i + run;
            let mut close = None;
            while j < chars.len() {
                if chars[j] == '`' {
                    let r = chars[j..].iter().take_while(|&&c| c == '`').count();
                    if r == run {
                        close = Some(j + r);
                        break;
                    }
                    j += r;
                } else {
                    j += 1;
                }
            }
            match close {
                Some(end) => {
                    out.push_str(&" ".repeat(end - i));
                    i = end;
                }
                None => {
                    // No closing run: the backticks are literal.
                    out.push_str(&"`".repeat(run));
                    i += run;
                }
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The opening fence of a fenced code block (its character and length), if `line` is one.
fn fence(line: &str) -> Option<(char, usize)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let c = rest.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = rest.chars().take_while(|&x| x == c).count();
    (n >= 3).then_some((c, n))
}

/// The lines of `text` outside fenced code blocks, masked by [`mask_line`], with their
/// 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(char, usize)> = None;
    let mut in_comment = false;
    for (k, line) in text.lines().enumerate() {
        if let Some((c, n)) = open {
            if let Some((c2, n2)) = fence(line) {
                let after = line.trim_start().trim_start_matches(c2);
                if c2 == c && n2 >= n && after.trim().is_empty() {
                    open = None;
                }
            }
            continue;
        }
        if !in_comment {
            if let Some(f) = fence(line) {
                open = Some(f);
                continue;
            }
        }
        out.push((k + 1, mask_line(line, &mut in_comment)));
    }
    out
}

/// The link destination starting at `chars[start]` (just after `](`): `<…>` or a run without
/// spaces whose parentheses balance. `None` when the `(` is never closed.
fn destination(chars: &[char], start: usize) -> Option<String> {
    let rest = chars.get(start..)?;
    let rest: Vec<char> = rest.iter().copied().skip_while(|c| *c == ' ').collect();
    if rest.first() == Some(&'<') {
        let end = rest.iter().position(|&c| c == '>')?;
        return Some(rest[1..end].iter().collect());
    }
    let mut depth = 0usize;
    let mut dest = String::new();
    for &c in &rest {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(dest),
            ')' => depth -= 1,
            ' ' | '\t' => {
                // A title follows; the destination ends here.
                return rest.contains(&')').then_some(dest);
            }
            _ => {}
        }
        dest.push(c);
    }
    None
}

/// Every link of a Markdown text: inline links and images, and reference definitions.
fn links(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (line, masked) in prose_lines(text) {
        let chars: Vec<char> = masked.chars().collect();
        // Reference definition: up to 3 spaces, `[label]:`, the destination.
        let trimmed = masked.trim_start();
        if masked.len() - trimmed.len() <= 3
            && trimmed.starts_with('[')
            && !trimmed.starts_with("[^")
        {
            if let Some(end) = trimmed.find("]:") {
                if let Some(target) = trimmed[end + 2..].split_whitespace().next() {
                    let target = target.trim_start_matches('<').trim_end_matches('>');
                    out.push(Link {
                        line,
                        target: target.to_string(),
                    });
                    continue;
                }
            }
        }
        for i in 0..chars.len().saturating_sub(1) {
            if chars[i] == ']' && chars[i + 1] == '(' && chars[..i].contains(&'[') {
                if let Some(target) = destination(&chars, i + 2) {
                    out.push(Link { line, target });
                }
            }
        }
    }
    out
}

/// Whether `c` is kept in a GitHub heading id (Ruby's `\p{Word}`, `-` and space), as far as
/// Rust's standard library can tell: letters, combining marks (the common blocks), ASCII
/// digits, `_`. Sub- and superscript digits are not decimal digits and are dropped, as on GitHub.
fn kept_in_slug(c: char) -> bool {
    let mark = matches!(c as u32,
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F);
    c.is_alphabetic() || c.is_ascii_digit() || mark || c == '_' || c == '-' || c == ' '
}

/// GitHub's id for a heading's text.
fn slug(heading: &str) -> String {
    // The rendered text: code spans lose their backticks, links keep their text.
    let mut text = String::new();
    let chars: Vec<char> = heading.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ']' && chars.get(i + 1) == Some(&'(') {
            // Skip the destination of a link: `](…)`.
            let mut depth = 0;
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            text.push(chars[i]);
        }
        i += 1;
    }
    text.to_lowercase()
        .chars()
        .filter(|&c| kept_in_slug(c))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a Markdown text defines: heading ids (deduplicated as GitHub does) and
/// explicit `<a id="…">` / `<a name="…">`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    let mut seen: Vec<String> = Vec::new();
    let mut open: Option<(char, usize)> = None;
    for line in text.lines() {
        if let Some((c, n)) = open {
            if let Some((c2, n2)) = fence(line) {
                if c2 == c && n2 >= n {
                    open = None;
                }
            }
            continue;
        }
        if let Some(f) = fence(line) {
            open = Some(f);
            continue;
        }
        let t = line.trim_start();
        let level = t.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&level) && t[level..].starts_with(' ') {
            let title = t[level..].trim().trim_end_matches('#').trim();
            let base = slug(title);
            let dup = seen.iter().filter(|s| **s == base).count();
            seen.push(base.clone());
            set.insert(if dup == 0 {
                base
            } else {
                format!("{base}-{dup}")
            });
        }
        for key in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(p) = rest.find(key) {
                rest = &rest[p + key.len()..];
                if let Some(end) = rest.find('"') {
                    set.insert(rest[..end].to_string());
                }
            }
        }
    }
    set
}

/// Whether a target names something outside the repository by scheme (`https:`, `mailto:`).
fn has_scheme(target: &str) -> bool {
    match target.find(':') {
        Some(p) => {
            let scheme = &target[..p];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                && !target[..p].contains('/')
        }
        None => false,
    }
}

/// `%20` and the like, as a browser decodes a link's path.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What is wrong with one link of `file` (inside `root`), if anything.
fn check(root: &Path, file: &Path, text: &str, link: &Link) -> Option<String> {
    let target = link.target.trim();
    if target.is_empty() {
        return Some("empty link target".to_string());
    }
    if has_scheme(target) {
        return None;
    }
    let (path, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let path = percent_decode(path);
    let (resolved, resolved_text) = if path.is_empty() {
        (file.to_path_buf(), Some(text.to_string()))
    } else if path.starts_with('/') {
        return Some(format!(
            "`{target}` is absolute; use a path relative to the file"
        ));
    } else {
        let resolved = file.parent().unwrap().join(&path);
        let Ok(canonical) = resolved.canonicalize() else {
            return Some(format!("`{target}`: {} does not exist", resolved.display()));
        };
        if !canonical.starts_with(root) {
            return Some(format!("`{target}` leaves the repository"));
        }
        let text = (canonical.is_file() && path.ends_with(".md"))
            .then(|| fs::read_to_string(&canonical).unwrap());
        (canonical, text)
    };
    match (fragment, resolved_text) {
        (Some(f), Some(t)) if !f.is_empty() => {
            let defined = anchors(&t);
            (!defined.contains(f)).then(|| {
                format!(
                    "`{target}`: {} has no heading with id `{f}`",
                    resolved.display()
                )
            })
        }
        _ => None,
    }
}

#[test]
fn every_relative_link_in_the_markdown_resolves() {
    let root = repo_root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    for required in [
        "README.md",
        "BENCHMARKS.md",
        "RELIABILITY.md",
        "docs/parity.md",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(required)),
            "{required} not found under {}",
            root.display()
        );
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for link in links(&text) {
            if has_scheme(&link.target) {
                continue;
            }
            checked += 1;
            if let Some(p) = check(&root, file, &text, &link) {
                problems.push(format!("{rel}:{}: {p}", link.line));
            }
        }
    }
    eprintln!(
        "{} Markdown files, {checked} relative links checked",
        files.len()
    );
    assert!(
        checked > 20,
        "only {checked} relative links found: is the scanner broken?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

// The scanner itself.

fn targets(text: &str) -> Vec<String> {
    links(text).into_iter().map(|l| l.target).collect()
}

#[test]
fn scanner_finds_links_and_images_and_skips_code() {
    let text = "\
See [a](docs/a.md) and ![pic](img/p.png \"title\") and [b](<with space.md>).
`[not](code.md)` and ``[nor](this.md)`` but [yes](f(1).md#x-y).
<!-- [hidden](comment.md)
still [hidden](comment2.md) -->[after](after.md)
```rust
let x = [y](z.md);
```
~~~~
[fenced](tilde.md)
~~~~
[ref]: ref/target.md
\\[escaped](escaped.md) [web](https://example.org) [mail](mailto:a@b.c) [a [nested] one](n.md)
";
    assert_eq!(
        targets(text),
        [
            "docs/a.md",
            "img/p.png",
            "with space.md",
            "f(1).md#x-y",
            "after.md",
            "ref/target.md",
            "https://example.org",
            "mailto:a@b.c",
            "n.md",
        ]
    );
    assert_eq!(links(text)[3].line, 2);
    assert_eq!(percent_decode("with%20space.md"), "with space.md");
    assert_eq!(percent_decode("100%"), "100%");
    assert!(has_scheme("https://x") && has_scheme("mailto:a@b") && !has_scheme("docs/a.md#b:c"));
}

#[test]
fn heading_ids_follow_github() {
    let text = "\
# ddim
## The scheduler (`DdimScheduler`), measured
## 5. DDPM's larger variance σ̂ (the DDIM paper's Table 1, σ̂ row)
## torch-compatible `randn` (`ddim::rng`) against torch
## Notes
## Notes
### See [the docs](docs/x.md) — ok
```
# not a heading
```
<a id=\"custom\"></a>
";
    let a = anchors(text);
    for id in [
        "ddim",
        "the-scheduler-ddimscheduler-measured",
        "5-ddpms-larger-variance-σ̂-the-ddim-papers-table-1-σ̂-row",
        "torch-compatible-randn-ddimrng-against-torch",
        "notes",
        "notes-1",
        "see-the-docs--ok",
        "custom",
    ] {
        assert!(a.contains(id), "missing `{id}` in {a:?}");
    }
    assert!(!a.contains("not-a-heading"));
    assert_eq!(slug("SW₂ against η"), "sw-against-η");
}

#[test]
fn a_broken_link_is_reported() {
    let root = repo_root();
    let readme = root.join("README.md");
    let text = "[gone](docs/no-such-page.md) [bad anchor](docs/parity.md#no-such-heading) \
                [ok](docs/parity.md#the-inverse-scheduler) [out](../../../etc/passwd)";
    let problems: Vec<_> = links(text)
        .iter()
        .filter_map(|l| check(&root, &readme, text, l))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("does not exist"), "{}", problems[0]);
    assert!(
        problems[1].contains("no heading with id `no-such-heading`"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].contains("leaves the repository") || problems[2].contains("does not exist"),
        "{}",
        problems[2]
    );
}
