//! The disclosure workflow end to end: request, decisions by role,
//! export with watermark, receipt and the kept public copy.

mod common;

use common::*;
use serde_json::Value;

const CONFIG: &str = r#"
[roles]
tester = ["operator"]
zhang = ["disclosure", "approver"]
li = ["approver"]
wang = ["disclosure"]

[disclosure]
watermark = "公开副本 {request}"
"#;

/// A data directory with the base fixture ingested and one request filed by zhang.
fn filed_request() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("config.toml"), CONFIG).unwrap();
    let input = fixture("cases/base-10s.mp4");
    run_json_ok(&data, &["process", input.to_str().unwrap()]);
    let sha = sha256_of(&input);
    let spec = fixture("redact-example.json");
    let request = success_json(&run_as(
        &data,
        "zhang",
        &[
            "--json",
            "disclose",
            "request",
            "--purpose",
            "litigation",
            "--item",
            &sha,
            "--spec",
            spec.to_str().unwrap(),
        ],
    ));
    assert_eq!(request["status"], "requested");
    assert_eq!(request["requester"], "zhang");
    let id = request["request_id"].as_str().unwrap().to_string();
    (dir, id, sha)
}

#[test]
fn export_without_approval_is_refused() {
    let (dir, id, _) = filed_request();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let output = run_as(
        &data,
        "wang",
        &[
            "--lang",
            "en",
            "disclose",
            "export",
            &id,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is requested, not approved"));
    assert!(!out.join(format!("{id}-receipt.json")).exists());
    assert!(
        !data.join("store/public/disclosures").exists(),
        "nothing reached the public tier"
    );
}

#[test]
fn requester_and_non_approver_cannot_approve() {
    let (dir, id, _) = filed_request();
    let data = dir.path().join("data");
    let own = run_as(
        &data,
        "zhang",
        &["--lang", "en", "disclose", "approve", &id],
    );
    assert!(!own.status.success());
    assert!(String::from_utf8_lossy(&own.stderr).contains("cannot decide it"));
    let other = run_as(&data, "wang", &["--lang", "zh", "disclose", "approve", &id]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("wang 无权执行 `disclose approve`"));
    let view = success_json(&run_as(&data, "li", &["--json", "disclose", "show", &id]));
    assert_eq!(view["status"], "requested");
    assert!(view["decisions"].as_array().unwrap().is_empty());
}

#[test]
fn rejected_request_cannot_be_exported() {
    let (dir, id, _) = filed_request();
    let data = dir.path().join("data");
    let view = success_json(&run_as(
        &data,
        "li",
        &[
            "--json",
            "disclose",
            "reject",
            &id,
            "--reason",
            "不属于公开范围",
        ],
    ));
    assert_eq!(view["status"], "rejected");
    assert_eq!(view["decisions"][0]["actor"], "li");
    let out = dir.path().join("out");
    let output = run_as(
        &data,
        "zhang",
        &["disclose", "export", &id, "--out", out.to_str().unwrap()],
    );
    assert!(!output.status.success());
}

#[test]
fn approved_export_is_watermarked_receipted_and_kept() {
    let (dir, id, sha) = filed_request();
    let data = dir.path().join("data");
    let view = success_json(&run_as(
        &data,
        "li",
        &["--json", "disclose", "approve", &id],
    ));
    assert_eq!(view["status"], "approved");
    assert_eq!(view["decisions"][0]["actor"], "li");

    let out = dir.path().join("out");
    let export = success_json(&run_as(
        &data,
        "wang",
        &[
            "--json",
            "disclose",
            "export",
            &id,
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    let receipt: Value = read_json(out.join(format!("{id}-receipt.json")));
    assert_eq!(receipt["request_id"], id.as_str());
    assert_eq!(receipt["approved_by"], "li");
    assert_eq!(receipt["exported_by"], "wang");
    assert_eq!(receipt["watermark"], format!("公开副本 {id}"));
    let item = &receipt["items"][0];
    assert_eq!(item["original_sha256"], sha.as_str());
    let file = out.join(item["output_file"].as_str().unwrap());
    assert_eq!(item["output_sha256"], sha256_of(&file).as_str());
    assert_eq!(
        export["receipt"]["items"][0]["output_sha256"],
        item["output_sha256"]
    );

    let kept = data
        .join("store/public")
        .join(item["public_key"].as_str().unwrap());
    assert_eq!(
        sha256_of(&kept),
        sha256_of(&file),
        "the public tier keeps the same copy"
    );
    let log: Value = read_json(format!("{}.redaction.json", kept.display()));
    assert_eq!(log["original"]["sha256"], sha.as_str());
    assert_eq!(log["watermark"], format!("公开副本 {id}"));
    let text = std::fs::read_to_string(out.join(format!("{id}-receipt.txt"))).unwrap();
    assert!(text.contains("音像资料调取回执"));
    assert!(text.contains("Disclosure receipt"));
    assert!(text.contains(&sha));

    let view = success_json(&run_as(&data, "li", &["--json", "disclose", "show", &id]));
    assert_eq!(view["status"], "exported");
    assert_eq!(view["exports"][0]["actor"], "wang");

    let fixity = success_json(&run_as(&data, "tester", &["--json", "verify", "--tier", "public"]));
    let objects = fixity["objects"].as_array().unwrap();
    let failures: Vec<_> = objects.iter().filter(|o| o["status"] != "ok").collect();
    assert!(failures.is_empty(), "every kept export record verifies: {failures:#?}");
    let keys: Vec<&str> = objects.iter().map(|o| o["key"].as_str().unwrap()).collect();
    for suffix in ["/receipt.json", "/receipt.txt", ".redaction.json", ".mp4"] {
        assert!(keys.iter().any(|k| k.ends_with(suffix)), "{suffix} is checked: {keys:?}");
    }
}

#[test]
fn export_into_the_store_is_refused_and_the_request_stays_approved() {
    let (dir, id, _) = filed_request();
    let data = dir.path().join("data");
    success_json(&run_as(&data, "li", &["--json", "disclose", "approve", &id]));
    let out = data.join("store/public/export");
    std::fs::create_dir_all(&out).unwrap();
    for (lang, refusal) in [("zh", "位于对象存储"), ("en", "lies inside the object store")] {
        let output = run_as(
            &data,
            "zhang",
            &["--lang", lang, "disclose", "export", &id, "--out", out.to_str().unwrap()],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(refusal), "{lang}: {stderr}");
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing was written");
    let view = success_json(&run_as(&data, "li", &["--json", "disclose", "show", &id]));
    assert_eq!(view["status"], "approved");
}
