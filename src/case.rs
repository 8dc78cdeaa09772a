//! Case records: the enforcement action, its officers and its inspected units.
//!
//! The enforcement terminal or an operator supplies a case record as JSON.
//! Its ids later name clips and object keys, so they are checked here, once:
//! an id is data, never a path. A record that is wrong is rejected with the
//! field that is wrong (`units[1].to`), in both languages.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::i18n::Text;

/// Maximum id length: enough for bureau case numbers, short enough to
/// stay one readable path component.
pub const MAX_ID_LEN: usize = 64;

/// Enforcement kinds that must be recorded end to end (Article 5 of the
/// bureau's rules), in the order the article lists them.
pub const ENFORCEMENT_KINDS: &[&str] = &[
    "administrative_license",
    "daily_inspection",
    "special_inspection",
    "penalty_investigation",
    "statement_or_hearing",
    "coercive_measure",
    "document_service",
    "joint_enforcement",
    "emergency_response",
    "complaint_investigation",
    "other",
];

#[derive(Debug, Error)]
pub enum CaseError {
    #[error("cannot read case record {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid case record {path}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: Text,
    },
}

/// Says in both languages why the JSON parser refused a case record. The
/// parser's English words follow in brackets only where they name a type
/// or value.
fn json_error_text(error: &serde_json::Error) -> Text {
    use serde_json::error::Category;
    let (line, column) = (error.line(), error.column());
    let zh = match error.classify() {
        Category::Eof => format!("JSON 不完整：第 {line} 行第 {column} 列处意外结束"),
        Category::Syntax => format!("不是有效的 JSON：第 {line} 行第 {column} 列有语法错误"),
        Category::Data => {
            format!("第 {line} 行第 {column} 列的值类型或取值不对（解析器原文：{error}）")
        }
        Category::Io => format!("读取失败（{error}）"),
    };
    Text::new(zh, error.to_string())
}

/// Returns whether a field path from the JSON parser names the whole document.
fn is_whole_document(field: &str) -> bool {
    matches!(field, "" | "." | "?")
}

impl CaseError {
    /// The message in one language, for the command line.
    pub fn message(&self, lang: crate::i18n::Lang) -> String {
        match self {
            CaseError::Read { path, source } => format!(
                "{} {}: {}",
                lang.pick("无法读取案件记录", "cannot read case record"),
                path.display(),
                match lang {
                    crate::i18n::Lang::Zh => crate::i18n::io_error_zh(source),
                    crate::i18n::Lang::En => source.to_string(),
                }
            ),
            // The parser names no field when the document as a whole is
            // not valid JSON.
            CaseError::Invalid { path, field, message } if is_whole_document(field) => format!(
                "{} {}: {}",
                lang.pick("案件记录无效", "invalid case record"),
                path.display(),
                message.get(lang)
            ),
            CaseError::Invalid {
                path,
                field,
                message,
            } => format!(
                "{} {}: {} `{field}`: {}",
                lang.pick("案件记录无效", "invalid case record"),
                path.display(),
                lang.pick("字段", "field"),
                message.get(lang)
            ),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CaseRecord {
    pub case_id: String,
    pub kind: String,
    #[serde(default)]
    pub officers: Vec<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<FixedOffset>>,
    pub ended_at: DateTime<FixedOffset>,
    pub units: Vec<Unit>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Unit {
    pub unit_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub credit_code: Option<String>,
    pub from: DateTime<FixedOffset>,
    pub to: DateTime<FixedOffset>,
    /// Devices that filmed this unit; empty means every device of the case.
    #[serde(default)]
    pub devices: Vec<String>,
}

impl CaseRecord {
    /// Reads and checks a case record.
    pub fn load(path: &Path) -> Result<CaseRecord, CaseError> {
        let bytes = std::fs::read(path).map_err(|source| CaseError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |field: String, message: Text| CaseError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };

        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let record: CaseRecord =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner();
                invalid(field, json_error_text(&inner))
            })?;

        record.validate().map_err(|(field, message)| invalid(field, message))?;
        Ok(record)
    }

    /// Checks ids, kinds, times and zones; returns the wrong field and why.
    pub fn validate(&self) -> Result<(), (String, Text)> {
        check_id(&self.case_id).map_err(|m| ("case_id".to_string(), m))?;
        if !ENFORCEMENT_KINDS.contains(&self.kind.as_str()) {
            return Err((
                "kind".into(),
                Text::new(
                    format!("未知的执法类型 {:?}，可用：{}", self.kind, ENFORCEMENT_KINDS.join(", ")),
                    format!(
                        "unknown enforcement kind {:?}; expected one of {}",
                        self.kind,
                        ENFORCEMENT_KINDS.join(", ")
                    ),
                ),
            ));
        }
        for (i, officer) in self.officers.iter().enumerate() {
            check_id(officer).map_err(|m| (format!("officers[{i}]"), m))?;
        }
        if let Some(zone) = &self.timezone {
            if zone.parse::<chrono_tz::Tz>().is_err() {
                return Err((
                    "timezone".into(),
                    Text::new(
                        format!("未知的时区 {zone:?}"),
                        format!("unknown time zone {zone:?}"),
                    ),
                ));
            }
        }
        if self.units.is_empty() {
            return Err((
                "units".into(),
                Text::new("至少需要一个检查单位", "at least one unit is required"),
            ));
        }

        let mut seen = std::collections::HashSet::new();
        for (i, unit) in self.units.iter().enumerate() {
            check_id(&unit.unit_id).map_err(|m| (format!("units[{i}].unit_id"), m))?;
            if !seen.insert(unit.unit_id.as_str()) {
                return Err((
                    format!("units[{i}].unit_id"),
                    Text::new(
                        format!("检查单位编号 {:?} 重复", unit.unit_id),
                        format!("duplicate unit id {:?}", unit.unit_id),
                    ),
                ));
            }
            if unit.to <= unit.from {
                return Err((
                    format!("units[{i}].to"),
                    Text::new(
                        "结束时间必须晚于开始时间",
                        "the end must be later than the start",
                    ),
                ));
            }
            for (j, device) in unit.devices.iter().enumerate() {
                check_id(device).map_err(|m| (format!("units[{i}].devices[{j}]"), m))?;
            }
            if let Some(name) = &unit.name {
                if name.chars().any(char::is_control) {
                    return Err((
                        format!("units[{i}].name"),
                        Text::new("名称含控制字符", "the name contains control characters"),
                    ));
                }
            }
        }
        self.validate_span()
    }

    /// Checks that the action's start and end enclose every unit, and that
    /// units filmed by one device do not overlap: the case-file deadline
    /// counts from `ended_at`, and a clip must never hold two units.
    fn validate_span(&self) -> Result<(), (String, Text)> {
        if let Some(started_at) = self.started_at {
            if started_at > self.ended_at {
                return Err((
                    "started_at".into(),
                    Text::new(
                        "执法活动的开始时间晚于结束时间 ended_at",
                        "the action starts after it ends (ended_at)",
                    ),
                ));
            }
            if let Some((i, _)) = self.units.iter().enumerate().find(|(_, u)| u.from < started_at) {
                return Err((
                    format!("units[{i}].from"),
                    Text::new(
                        "检查单位早于执法活动的开始时间 started_at",
                        "the unit starts before the action starts (started_at)",
                    ),
                ));
            }
        }
        if let Some((i, _)) = self.units.iter().enumerate().find(|(_, u)| u.to > self.ended_at) {
            return Err((
                format!("units[{i}].to"),
                Text::new(
                    "检查单位晚于执法活动的结束时间 ended_at；请更正 ended_at，立卷归档期限由它计算",
                    "the unit ends after the action ends (ended_at); correct ended_at, the case-file deadline counts from it",
                ),
            ));
        }

        for (i, unit) in self.units.iter().enumerate() {
            for (j, earlier) in self.units[..i].iter().enumerate() {
                let overlaps = unit.from < earlier.to && earlier.from < unit.to;
                if overlaps && shares_device(unit, earlier) {
                    return Err((
                        format!("units[{i}].from"),
                        Text::new(
                            format!(
                                "检查单位 {:?} 与 {:?}（units[{j}]）时间重叠且使用同一设备；请用 devices 指明各自的设备，或更正时间",
                                unit.unit_id, earlier.unit_id
                            ),
                            format!(
                                "unit {:?} overlaps unit {:?} (units[{j}]) on the same device; name each unit's devices or correct the times",
                                unit.unit_id, earlier.unit_id
                            ),
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Returns whether two units may be filmed by one device. An empty device
/// list means every device of the case.
fn shares_device(a: &Unit, b: &Unit) -> bool {
    a.devices.is_empty() || b.devices.is_empty() || a.devices.iter().any(|d| b.devices.contains(d))
}

/// Accepts an id that is safe as one path component and one object-key
/// segment: ASCII letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn check_id(id: &str) -> Result<(), Text> {
    if id.is_empty() {
        return Err(Text::new("编号为空", "the id is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Text::new(
            format!("编号超过 {MAX_ID_LEN} 个字符"),
            format!("the id is longer than {MAX_ID_LEN} characters"),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.starts_with('.') || !id.chars().all(allowed) {
        return Err(Text::new(
            format!("编号 {id:?} 只能包含字母、数字、“-”“_”“.”，且不能以“.”开头（不允许路径、“../”或控制字符）"),
            format!("id {id:?} may contain only letters, digits, '-', '_' and '.', and must not start with '.' (no paths, '../' or control characters)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_case(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("case.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    const VALID: &str = r#"{"case_id":"QY-2024-0501-001","kind":"daily_inspection",
        "officers":["130631001"],"timezone":"Asia/Shanghai","ended_at":"2024-05-01T10:00:37+08:00",
        "units":[{"unit_id":"U1","name":"某某餐饮店","from":"2024-05-01T10:00:00+08:00","to":"2024-05-01T10:00:14+08:00"}]}"#;

    fn field_of(error: CaseError) -> String {
        match error {
            CaseError::Invalid { field, .. } => field,
            other => panic!("expected an invalid-field error, got {other}"),
        }
    }

    #[test]
    fn truncated_record_is_named_incomplete_in_chinese() {
        let dir = tempfile::tempdir().unwrap();
        let error = CaseRecord::load(&write_case(&dir, "{\n")).unwrap_err();
        let zh = error.message(crate::i18n::Lang::Zh);
        assert!(zh.contains("JSON 不完整：第 2 行第 0 列处意外结束"), "{zh}");
        assert!(!zh.contains("EOF"), "{zh}");
        let en = error.message(crate::i18n::Lang::En);
        assert!(en.contains("EOF while parsing"), "{en}");
        assert!(!zh.contains("字段"), "no field is named for the whole document: {zh}");
        assert!(!en.contains("field"), "no field is named for the whole document: {en}");
    }

    #[test]
    fn missing_record_is_named_in_chinese() {
        let dir = tempfile::tempdir().unwrap();
        let error = CaseRecord::load(&dir.path().join("none.json")).unwrap_err();
        let zh = error.message(crate::i18n::Lang::Zh);
        assert!(zh.contains("无法读取案件记录"), "{zh}");
        assert!(zh.contains("文件或目录不存在"), "{zh}");
    }

    #[test]
    fn valid_record_loads() {
        let dir = tempfile::tempdir().unwrap();
        let record = CaseRecord::load(&write_case(&dir, VALID)).unwrap();
        assert_eq!(record.units.len(), 1);
        assert_eq!(record.units[0].unit_id, "U1");
    }

    #[test]
    fn path_in_unit_id_is_rejected_with_its_field() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../etc", "/abs", "a/b", "U1\u{7}", ".hidden", ""] {
            let text = VALID.replace("\"U1\"", &serde_json::to_string(bad).unwrap());
            let error = CaseRecord::load(&write_case(&dir, &text)).unwrap_err();
            assert_eq!(field_of(error), "units[0].unit_id", "id {bad:?}");
        }
    }

    #[test]
    fn unit_ending_before_start_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace("10:00:14+08:00", "09:59:00+08:00");
        let error = CaseRecord::load(&write_case(&dir, &text)).unwrap_err();
        assert_eq!(field_of(error), "units[0].to");
    }

    #[test]
    fn malformed_time_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace("2024-05-01T10:00:00+08:00", "yesterday");
        let error = CaseRecord::load(&write_case(&dir, &text)).unwrap_err();
        assert_eq!(field_of(error), "units[0].from");
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace("daily_inspection", "picnic");
        let error = CaseRecord::load(&write_case(&dir, &text)).unwrap_err();
        assert_eq!(field_of(error), "kind");
    }

    #[test]
    fn unit_ending_after_action_end_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace("\"ended_at\":\"2024-05-01T10:00:37+08:00\"", "\"ended_at\":\"2024-05-01T10:00:10+08:00\"");
        let error = CaseRecord::load(&write_case(&dir, &text)).unwrap_err();
        assert_eq!(field_of(error), "units[0].to");
    }

    #[test]
    fn action_starting_after_its_end_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace("\"ended_at\"", "\"started_at\":\"2024-05-01T11:00:00+08:00\",\"ended_at\"");
        let error = CaseRecord::load(&write_case(&dir, &text)).unwrap_err();
        assert_eq!(field_of(error), "started_at");
    }

    #[test]
    fn unit_before_action_start_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let text = VALID.replace("\"ended_at\"", "\"started_at\":\"2024-05-01T10:00:05+08:00\",\"ended_at\"");
        let error = CaseRecord::load(&write_case(&dir, &text)).unwrap_err();
        assert_eq!(field_of(error), "units[0].from");
    }

    const TWO_UNITS: &str = r#"{"case_id":"QY-1","kind":"daily_inspection","ended_at":"2024-05-01T10:01:00+08:00",
        "units":[{"unit_id":"U1","from":"2024-05-01T10:00:00+08:00","to":"2024-05-01T10:00:14+08:00"DEV1},
                 {"unit_id":"U2","from":"2024-05-01T10:00:10+08:00","to":"2024-05-01T10:00:30+08:00"DEV2}]}"#;

    #[test]
    fn overlapping_units_on_one_device_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        for (dev1, dev2) in [("", ""), (r#","devices":["HB1"]"#, ""), (r#","devices":["HB1"]"#, r#","devices":["HB2","HB1"]"#)] {
            let text = TWO_UNITS.replace("DEV1", dev1).replace("DEV2", dev2);
            let error = CaseRecord::load(&write_case(&dir, &text)).unwrap_err();
            assert_eq!(field_of(error), "units[1].from", "devices {dev1:?} {dev2:?}");
        }
    }

    #[test]
    fn overlapping_units_on_different_devices_load() {
        let dir = tempfile::tempdir().unwrap();
        let text = TWO_UNITS
            .replace("DEV1", r#","devices":["HB1"]"#)
            .replace("DEV2", r#","devices":["HB2"]"#);
        let record = CaseRecord::load(&write_case(&dir, &text)).unwrap();
        assert_eq!(record.units.len(), 2);
    }

    #[test]
    fn adjacent_units_load() {
        let dir = tempfile::tempdir().unwrap();
        let text = TWO_UNITS
            .replace("10:00:10+08:00", "10:00:14+08:00")
            .replace("DEV1", "")
            .replace("DEV2", "");
        assert!(CaseRecord::load(&write_case(&dir, &text)).is_ok());
    }
}
