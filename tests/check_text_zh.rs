//! Tests that the Chinese text of `check` names start sources and unit gap
//! kinds in Chinese, not as the English codes of the JSON.

mod common;

use common::*;

fn check_text(lang: &str) -> String {
    let data = tempfile::tempdir().unwrap();
    let session = fixture("cases/session");
    let case = session.join("case.json");
    let output = run(
        data.path(),
        &["--lang", lang, "check", session.to_str().unwrap(), "--case", case.to_str().unwrap()],
    );
    assert_success(&output);
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn chinese_check_text_has_no_codes() {
    let text = check_text("zh");
    let starts: Vec<_> = text.lines().filter(|l| l.contains("开始时间:")).collect();
    assert_eq!(starts.len(), 3, "{text}");
    for line in starts {
        assert!(line.ends_with("(容器创建时间)"), "{line}");
    }
    let gap = text
        .lines()
        .find(|l| l.trim_start().starts_with("缺失"))
        .unwrap_or_else(|| panic!("no missing stretch in:\n{text}"));
    assert!(gap.contains("缺失 中断 2024-05-01 10:00:20.026"), "{gap}");
    assert!(!gap.contains(" gap "), "{gap}");
}

#[test]
fn english_check_text_names_sources() {
    let text = check_text("en");
    assert!(
        text.contains("start: 2024-05-01 10:00:00.000 (container creation time)"),
        "{text}"
    );
    assert!(
        text.contains("missing gap 2024-05-01 10:00:20.026"),
        "{text}"
    );
}
