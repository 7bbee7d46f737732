//! docs/PROTOCOLS.md is the project's reference for the wire protocols and the command line.
//! These checks keep it true where drift is easy to miss:
//!
//! - every long flag `reactor --help` lists is documented in PROTOCOLS.md §1 (it has a row of
//!   its own in an options table there), and every `--flag` §1 mentions anywhere is one
//!   `reactor --help` lists: a flag added to one side only fails;
//! - every `PROTOCOLS.md §N` (or `§N.M`) reference in the sources (`src/`, and also
//!   `examples/`, `tests/` and `docs/`) names a section that exists;
//! - every constant §6 (limits) names in code font is still declared somewhere in `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The reference, relative to the crate root.
const DOC: &str = "docs/PROTOCOLS.md";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A numbered heading of the reference: `## 6. Limits` is section `6`, `### 6.2 …` is `6.2`.
/// Returns the number, or `None` for an unnumbered heading or a line that is not one.
fn heading_number(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("## ")
        .or_else(|| line.strip_prefix("### "))?;
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let number = number.trim_end_matches('.');
    let well_formed = !number.is_empty()
        && number
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    well_formed.then(|| number.to_owned())
}

/// The headings of a Markdown text, outside fenced code blocks: line index and level.
fn headings(lines: &[&str]) -> Vec<(usize, usize)> {
    let mut in_fence = false;
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let level = line.chars().take_while(|&c| c == '#').count();
        if !in_fence && level >= 1 && line.chars().nth(level) == Some(' ') {
            found.push((i, level));
        }
    }
    found
}

/// Every numbered section and subsection of the reference, with its text (heading included,
/// up to the next heading of the same or a higher level).
fn sections(doc: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = doc.lines().collect();
    let headings = headings(&lines);
    let mut found = BTreeMap::new();
    for (k, &(start, level)) in headings.iter().enumerate() {
        let Some(number) = heading_number(lines[start]) else {
            continue;
        };
        let end = headings[k + 1..]
            .iter()
            .find(|&&(_, next_level)| next_level <= level)
            .map_or(lines.len(), |&(next, _)| next);
        let previous = found.insert(number.clone(), lines[start..end].join("\n"));
        assert!(previous.is_none(), "{DOC}: section {number} appears twice");
    }
    found
}

/// The long flags (`--name`) in `text`: `--` at the start of a word, then a letter or digit,
/// then letters, digits, `-` and `.` (`--max-udp-sessions-per-ip`, `--http1.0`).
fn long_flags(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut flags = BTreeSet::new();
    let mut i = 0;
    while let Some(offset) = text[i..].find("--") {
        let start = i + offset;
        i = start + 2;
        let at_word_start = start == 0 || {
            let before = bytes[start - 1];
            !(before.is_ascii_alphanumeric() || before == b'-' || before == b'_')
        };
        if !at_word_start || !bytes.get(i).is_some_and(u8::is_ascii_alphanumeric) {
            continue;
        }
        let len = text[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
            .unwrap_or(text.len() - i);
        let name = text[i..i + len].trim_end_matches(['.', '-']);
        flags.insert(format!("--{name}"));
        i += len;
    }
    flags
}

/// `a flag: --x` or `flags: --x, --y`, for failure messages.
fn listed(one: &str, many: &str, names: &[&String]) -> String {
    let names: Vec<&str> = names.iter().map(|name| name.as_str()).collect();
    let what = if names.len() == 1 { one } else { many };
    format!("{what}: {}", names.join(", "))
}

fn reactor_help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_reactor"))
        .arg("--help")
        .output()
        .expect("run reactor --help");
    assert!(
        output.status.success(),
        "reactor --help exited with {}",
        output.status
    );
    String::from_utf8(output.stdout).expect("reactor --help prints UTF-8")
}

/// The text of PROTOCOLS.md §1 (with its subsections).
fn section_1() -> String {
    let doc = read(&root().join(DOC));
    sections(&doc)
        .remove("1")
        .unwrap_or_else(|| panic!("{DOC} has no section 1 (a heading '## 1. …')"))
}

/// The flags §1 defines: those named in the first cell of a table row (the options table,
/// `| \`--ticks N\` | … |`). A flag that §1 only mentions in passing is not documented.
fn defined_flags(section: &str) -> BTreeSet<String> {
    section
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix('|'))
        .filter_map(|row| row.split('|').next())
        .flat_map(long_flags)
        .collect()
}

#[test]
fn every_flag_in_reactor_help_is_documented_in_section_1() {
    let help = long_flags(&reactor_help());
    assert!(
        help.contains("--time") && help.contains("--help"),
        "found no flags in reactor --help: {help:?}"
    );
    let documented = defined_flags(&section_1());
    let missing: Vec<&String> = help.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "reactor --help lists {} that {DOC} §1 does not document (give each a row of its \
         own in the options table)",
        listed("a flag", "flags", &missing)
    );
}

#[test]
fn every_flag_documented_in_section_1_is_in_reactor_help() {
    let help = long_flags(&reactor_help());
    // Anywhere in §1, rows and prose alike: §1 must not speak of flags the binary lacks.
    let documented = long_flags(&section_1());
    let unknown: Vec<&String> = documented.difference(&help).collect();
    assert!(
        unknown.is_empty(),
        "{DOC} §1 documents {} that reactor --help does not list",
        listed("a flag", "flags", &unknown)
    );
}

/// Every `.rs` and `.md` file under `dir`, recursively (none if `dir` does not exist).
fn source_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            source_files(&path, found);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "rs" || ext == "md")
        {
            found.push(path);
        }
    }
}

/// The section numbers cited as `PROTOCOLS.md §N` or `PROTOCOLS.md §N.M` in `text`, with the
/// line each is on.
fn section_references(text: &str) -> Vec<(usize, String)> {
    const CITE: &str = "PROTOCOLS.md §";
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(CITE) {
            rest = &rest[at + CITE.len()..];
            let number: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.');
            if !number.is_empty() {
                found.push((index + 1, number.to_owned()));
            }
        }
    }
    found
}

#[test]
fn every_protocols_md_section_reference_names_an_existing_section() {
    let doc = read(&root().join(DOC));
    let sections = sections(&doc);

    let mut files = Vec::new();
    for dir in ["src", "examples", "tests", "docs"] {
        source_files(&root().join(dir), &mut files);
    }
    files.sort();
    let mut in_src = 0;
    let mut broken = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(root()).unwrap_or(file);
        for (line, number) in section_references(&read(file)) {
            if relative.starts_with("src") {
                in_src += 1;
            }
            if !sections.contains_key(&number) {
                broken.push(format!(
                    "{}:{line} cites PROTOCOLS.md §{number}, which {DOC} does not have",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        in_src > 0,
        "found no 'PROTOCOLS.md §N' reference under src/: is the search broken?"
    );
    assert!(
        broken.is_empty(),
        "references to missing sections (sections present: {}):\n{}",
        sections.keys().cloned().collect::<Vec<_>>().join(", "),
        broken.join("\n")
    );
    for number in ["1", "2", "3", "4", "5"] {
        assert!(
            sections.contains_key(number),
            "{DOC} has no section {number}: sections 1 to 5 keep their numbers"
        );
    }
}

/// The names written in code font that look like constants (`OUTPUT_LIMIT`, `LINGER`).
fn constant_names(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| {
            name.len() > 1
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_constant_named_in_section_6_exists_in_src() {
    let doc = read(&root().join(DOC));
    let limits = sections(&doc)
        .remove("6")
        .unwrap_or_else(|| panic!("{DOC} has no section 6 (limits)"));
    let named = constant_names(&limits);
    assert!(
        named.contains("OUTPUT_LIMIT"),
        "found no constants in {DOC} §6: {named:?}"
    );
    let mut files = Vec::new();
    source_files(&root().join("src"), &mut files);
    let sources: Vec<String> = files.iter().map(|file| read(file)).collect();
    let missing: Vec<&String> = named
        .iter()
        .filter(|name| {
            let declaration = format!("const {name}:");
            !sources.iter().any(|text| text.contains(&declaration))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{DOC} §6 names {} that no `const` under src/ declares (renamed or removed? \
         update §6)",
        listed("a constant", "constants", &missing)
    );
}

#[test]
fn the_helpers_read_what_they_should() {
    assert_eq!(
        long_flags("--bind IP, -v, --max-udp-sessions-per-ip N. [--http1.0] a--b ---- --"),
        ["--bind", "--http1.0", "--max-udp-sessions-per-ip"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        section_references("see PROTOCOLS.md §2, PROTOCOLS.md §6.1. and PROTOCOLS.md"),
        vec![(1, "2".to_owned()), (1, "6.1".to_owned())]
    );
    let doc = "# Title\n## 1. One\n--a\n```sh\n# a comment, not a heading\n```\n### 1.1 Sub\n--b\n\
               ## 2. Two\n--c\n## Unnumbered\n--d\n";
    let found = sections(doc);
    assert_eq!(found.keys().collect::<Vec<_>>(), ["1", "1.1", "2"]);
    assert_eq!(
        long_flags(&found["1"]),
        ["--a", "--b"].map(String::from).into()
    );
    assert_eq!(long_flags(&found["2"]), ["--c"].map(String::from).into());
    assert_eq!(
        defined_flags("| `--a N` | see --b |\n|---|---|\nprose --c\n  | `-v`, `--d` |"),
        ["--a", "--d"].map(String::from).into()
    );
    assert_eq!(
        constant_names("`OUTPUT_LIMIT` (64 KiB), `--max-conns`, `usize`, `A`, `LINGER`"),
        ["LINGER", "OUTPUT_LIMIT"].map(String::from).into()
    );
}
