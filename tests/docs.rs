//! The docs stay true to the code: the protocol page repeats the codec's
//! byte layouts exactly, and every page the README links to exists.

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The module documentation's table and layout lines of a source file.
fn layout_lines(path: &str) -> Vec<String> {
    read(path)
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim().to_owned())
        .filter(|l| l.starts_with("| 0x") || l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect()
}

#[test]
fn the_protocol_page_repeats_the_codec_layouts() {
    let page = read("docs/protocol.md");
    let page_lines: Vec<&str> = page.lines().map(str::trim).collect();
    for file in ["protocol/src/frame/mod.rs", "protocol/src/record.rs"] {
        let lines = layout_lines(file);
        assert!(lines.len() >= 8, "{file}: {lines:?}");
        for l in lines {
            // Intra-doc links read as plain code on the page.
            let plain = l
                .replace("[`Kind`]", "`Kind`")
                .replace("[`crate::record`]", "the record layout below")
                .replace("[`ErrorCode`]", "the codes below");
            assert!(
                page_lines.contains(&plain.as_str()),
                "docs/protocol.md lacks this line of {file}:\n{plain}"
            );
        }
    }
}

#[test]
fn every_linked_page_exists() {
    let readme = read("README.md");
    let mut checked = 0;
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap();
        if target.starts_with("http") {
            continue;
        }
        assert!(
            std::path::Path::new(ROOT).join(target).exists(),
            "README links to {target}, which does not exist"
        );
        checked += 1;
    }
    assert!(checked >= 8, "{checked} links");
}
