//! Reports: one JSON document for scripts, a readable text for people.
//!
//! The JSON field names are an interface that scripts rely on; new fields
//! may be added, none renamed. The text report is rendered in Chinese or
//! English from the same data.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::finding::Finding;
use crate::i18n::{Lang, Text};
use crate::probe::{StartSource, TrackSummary};
use crate::runner::{RecordingJob, Services};

/// Sections that stages render for people (a `Text` each), shown after the
/// files in this order.
const TEXT_SECTIONS: [&str; 2] = ["continuity_text", "clips_text"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Stored now and readable.
    Ingested,
    /// Stored before, recognized by its hash; nothing was written.
    AlreadyIngested,
    /// Stored and kept bit-exact, but its contents cannot be read.
    Unreadable,
    /// Could not be read from the upload at all; nothing was stored.
    Failed,
    /// Not processed: not a regular file, or a link out of the folder.
    Skipped,
}

impl FileStatus {
    pub fn label(self, lang: Lang) -> &'static str {
        match self {
            FileStatus::Ingested => lang.pick("已导入", "ingested"),
            FileStatus::AlreadyIngested => lang.pick("已导入过", "already ingested"),
            FileStatus::Unreadable => lang.pick("无法解析（原件已保存）", "unreadable (original kept)"),
            FileStatus::Failed => lang.pick("失败", "failed"),
            FileStatus::Skipped => lang.pick("已跳过", "skipped"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    pub status: FileStatus,
    /// True when this run wrote the original; false when it was there before.
    pub stored_now: bool,
    pub reason: Option<Text>,
    pub sha256: Option<String>,
    pub sm3: Option<String>,
    pub bytes: Option<u64>,
    pub tier: Option<String>,
    pub evidence_key: Option<String>,
    /// Location of the original in the local store.
    pub evidence_path: Option<String>,
    pub container: Option<String>,
    pub tracks: Vec<TrackSummary>,
    pub start: Option<DateTime<Utc>>,
    pub start_source: Option<StartSource>,
    pub device: Option<String>,
    pub officer: Option<String>,
    pub findings: Vec<Finding>,
    pub errors: Vec<Text>,
}

impl FileReport {
    fn empty(path: &Path, status: FileStatus, reason: Option<Text>) -> FileReport {
        FileReport {
            path: path.display().to_string(),
            status,
            stored_now: false,
            reason,
            sha256: None,
            sm3: None,
            bytes: None,
            tier: None,
            evidence_key: None,
            evidence_path: None,
            container: None,
            tracks: Vec::new(),
            start: None,
            start_source: None,
            device: None,
            officer: None,
            findings: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub fn skipped(path: &Path, reason: Text) -> FileReport {
        FileReport::empty(path, FileStatus::Skipped, Some(reason))
    }

    pub fn failed(path: &Path, reason: Text) -> FileReport {
        FileReport::empty(path, FileStatus::Failed, Some(reason))
    }

    pub fn from_job(job: &RecordingJob) -> FileReport {
        let mut report = FileReport::empty(&job.path, FileStatus::Failed, None);
        if let Some(ingested) = &job.ingested {
            report.status = if ingested.is_new {
                FileStatus::Ingested
            } else {
                FileStatus::AlreadyIngested
            };
            report.stored_now = ingested.is_new;
            report.sha256 = Some(ingested.sha256.clone());
            report.sm3 = Some(ingested.sm3.clone());
            report.bytes = Some(ingested.bytes);
            report.tier = Some(ingested.tier.as_str().to_string());
            report.evidence_key = Some(ingested.key.clone());
            report.evidence_path = Some(ingested.location.clone());
        }
        if let Some(probe) = &job.probe {
            if !probe.readable {
                report.status = FileStatus::Unreadable;
                report.reason = probe.reason.clone();
            }
            report.container = probe.container.clone();
            report.tracks = probe.tracks.clone();
            report.start = Some(probe.start);
            report.start_source = Some(probe.start_source);
            report.device = probe.device.clone();
            report.officer = probe.officer.clone();
            report.findings = probe
                .findings
                .iter()
                .filter(|f| f.kind != "unreadable")
                .cloned()
                .collect();
        }
        report.findings.extend(job.findings.iter().cloned());
        report
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcessReport {
    pub data_dir: String,
    pub catalog: String,
    pub store: String,
    pub files: Vec<FileReport>,
    /// Batch-wide results of later stages (sessions, units, clips), by name.
    #[serde(flatten)]
    pub sections: serde_json::Map<String, serde_json::Value>,
    pub errors: Vec<Text>,
}

impl ProcessReport {
    pub fn new(services: &Services) -> ProcessReport {
        ProcessReport {
            data_dir: services.data_dir.display().to_string(),
            catalog: services.data_dir.join("catalog.sqlite").display().to_string(),
            store: services.data_dir.join("store").display().to_string(),
            files: Vec::new(),
            sections: serde_json::Map::new(),
            errors: Vec::new(),
        }
    }

    /// Counts files by status, for the summary line and the exit code.
    pub fn count(&self, status: FileStatus) -> usize {
        self.files.iter().filter(|f| f.status == status).count()
    }

    /// Renders the report for people.
    pub fn render_text(&self, lang: Lang) -> String {
        let mut out = String::new();
        for file in &self.files {
            let _ = writeln!(out, "{}", printable(&file.path));
            let _ = writeln!(out, "  {}: {}", lang.pick("状态", "status"), file.status.label(lang));
            if let Some(reason) = &file.reason {
                let _ = writeln!(out, "  {}: {}", lang.pick("原因", "reason"), reason.get(lang));
            }
            if let Some(sha) = &file.sha256 {
                let _ = writeln!(out, "  SHA-256: {sha}");
            }
            if let Some(sm3) = &file.sm3 {
                let _ = writeln!(out, "  SM3:     {sm3}");
            }
            if let Some(bytes) = file.bytes {
                let _ = writeln!(out, "  {}: {bytes}", lang.pick("字节数", "bytes"));
            }
            if let Some(path) = &file.evidence_path {
                let _ = writeln!(out, "  {}: {path}", lang.pick("证据原件", "evidence original"));
            }
            if let (Some(start), Some(source)) = (file.start, file.start_source) {
                let source = match source {
                    StartSource::Container => lang.pick("容器创建时间", "container creation time"),
                    StartSource::FileName => lang.pick("文件名", "file name"),
                    StartSource::UploadTime => lang.pick("上传时间", "upload time"),
                };
                let _ = writeln!(out, "  {}: {} ({source})", lang.pick("开始时间", "start"), start.to_rfc3339());
            }
            if file.device.is_some() || file.officer.is_some() {
                let _ = writeln!(
                    out,
                    "  {}: {}  {}: {}",
                    lang.pick("设备", "device"),
                    file.device.as_deref().unwrap_or("-"),
                    lang.pick("执法人员", "officer"),
                    file.officer.as_deref().unwrap_or("-")
                );
            }
            for track in &file.tracks {
                let _ = writeln!(
                    out,
                    "  {} #{} {} {}{}{}{}",
                    lang.pick("轨道", "track"),
                    track.index,
                    track.kind,
                    track.codec,
                    track
                        .width
                        .zip(track.height)
                        .map(|(w, h)| format!(" {w}x{h}"))
                        .unwrap_or_default(),
                    track
                        .duration
                        .map(|d| format!(" {d:.3} s"))
                        .unwrap_or_default(),
                    track
                        .frames
                        .map(|n| format!(" {n} {}", lang.pick("帧", "frames")))
                        .unwrap_or_default(),
                );
            }
            for finding in &file.findings {
                let _ = writeln!(out, "  [{}] {}", finding.kind, finding.message.get(lang));
            }
            for error in &file.errors {
                let _ = writeln!(out, "  {}: {}", lang.pick("错误", "error"), error.get(lang));
            }
        }
        for name in TEXT_SECTIONS {
            if let Some(text) = self.sections.get(name).and_then(|t| t.get(lang.pick("zh", "en"))) {
                out.push_str(text.as_str().unwrap_or_default());
            }
        }
        for error in &self.errors {
            let _ = writeln!(out, "{}: {}", lang.pick("错误", "error"), error.get(lang));
        }
        let _ = writeln!(
            out,
            "\n{}: {} {}, {} {}, {} {}, {} {}, {} {}",
            lang.pick("合计", "total"),
            self.count(FileStatus::Ingested),
            FileStatus::Ingested.label(lang),
            self.count(FileStatus::AlreadyIngested),
            FileStatus::AlreadyIngested.label(lang),
            self.count(FileStatus::Unreadable),
            FileStatus::Unreadable.label(lang),
            self.count(FileStatus::Failed),
            FileStatus::Failed.label(lang),
            self.count(FileStatus::Skipped),
            FileStatus::Skipped.label(lang),
        );
        let _ = writeln!(out, "{}: {}", lang.pick("数据目录", "data directory"), self.data_dir);
        let _ = writeln!(out, "{}: {}", lang.pick("目录库", "catalog"), self.catalog);
        let _ = writeln!(out, "{}: {}", lang.pick("对象存储", "object store"), self.store);
        out
    }
}

/// Escapes control characters in text from outside (file names), so that a
/// name holding a newline cannot forge lines of the text report.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_in_file_name_cannot_forge_a_line() {
        assert_eq!(printable("a\nstatus: ingested.mp4"), "a\\nstatus: ingested.mp4");
        assert_eq!(printable("正常.MP4"), "正常.MP4");
    }
}
