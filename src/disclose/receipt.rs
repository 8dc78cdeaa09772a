//! The export receipt: what left the bureau, for which request, approved
//! by whom, with every hash, in JSON and as readable text in Chinese and
//! English.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Purpose, RequestView, STATUS_APPROVED};
use crate::redact::Method;

/// Format name and version of the receipt.
pub const RECEIPT_FORMAT: &str = "evidence-disclosure-receipt/1";

#[derive(Clone, Debug, Serialize)]
pub struct ExportedItem {
    pub position: i64,
    /// The item as requested: a SHA-256 or `TIER/KEY`.
    pub item: String,
    pub original_sha256: String,
    pub output_file: String,
    pub output_sha256: String,
    pub output_bytes: u64,
    pub redaction_log_sha256: String,
    /// Key of the kept copy in the `public` tier.
    pub public_key: String,
    pub method: Method,
    pub frames: u64,
    pub frames_masked: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Receipt {
    pub format: &'static str,
    pub request_id: String,
    pub requester: String,
    pub purpose: String,
    pub requested_at: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    pub exported_by: String,
    pub exported_at: DateTime<Utc>,
    pub watermark: String,
    pub items: Vec<ExportedItem>,
}

impl Receipt {
    pub fn new(
        view: &RequestView,
        actor: &str,
        at: DateTime<Utc>,
        watermark: &str,
        items: Vec<ExportedItem>,
    ) -> Receipt {
        let approval = view
            .decisions
            .iter()
            .rev()
            .find(|d| d.decision == STATUS_APPROVED);
        Receipt {
            format: RECEIPT_FORMAT,
            request_id: view.request.request_id.clone(),
            requester: view.request.requester.clone(),
            purpose: view.request.purpose.clone(),
            requested_at: view.request.created_at.clone(),
            approved_by: approval.map(|d| d.actor.clone()),
            approved_at: approval.map(|d| d.decided_at.clone()),
            exported_by: actor.to_string(),
            exported_at: at,
            watermark: watermark.to_string(),
            items,
        }
    }

    /// Renders the receipt as text, Chinese first, then English.
    pub fn render_text(&self) -> String {
        let purpose = Purpose::text(&self.purpose);
        format!(
            "{}\n{}",
            self.render_in(&ZH_LABELS, &purpose.zh),
            self.render_in(&EN_LABELS, &purpose.en)
        )
    }

    /// Renders the receipt in one language.
    fn render_in(&self, labels: &ReceiptLabels, purpose: &str) -> String {
        let none = String::from("-");
        let mut out = format!("{} {}\n", labels.title, self.request_id);
        let fields = [
            (labels.requester, self.requester.as_str()),
            (labels.purpose, purpose),
            (labels.requested_at, self.requested_at.as_str()),
            (
                labels.approved_by,
                self.approved_by.as_ref().unwrap_or(&none),
            ),
            (
                labels.approved_at,
                self.approved_at.as_ref().unwrap_or(&none),
            ),
            (labels.exported_by, self.exported_by.as_str()),
            (labels.exported_at, &self.exported_at.to_rfc3339()),
            (labels.watermark, self.watermark.as_str()),
        ];
        for (label, value) in fields {
            out.push_str(&format!("{label}{}{value}\n", labels.colon));
        }
        for item in &self.items {
            out.push_str(&(labels.item)(item));
        }
        out
    }
}

/// Labels of the receipt's text form in one language.
struct ReceiptLabels {
    title: &'static str,
    colon: &'static str,
    requester: &'static str,
    purpose: &'static str,
    requested_at: &'static str,
    approved_by: &'static str,
    approved_at: &'static str,
    exported_by: &'static str,
    exported_at: &'static str,
    watermark: &'static str,
    item: fn(&ExportedItem) -> String,
}

const ZH_LABELS: ReceiptLabels = ReceiptLabels {
    title: "音像资料调取回执",
    colon: "：",
    requester: "申请人",
    purpose: "用途",
    requested_at: "申请时间",
    approved_by: "审批人",
    approved_at: "审批时间",
    exported_by: "导出人",
    exported_at: "导出时间",
    watermark: "水印",
    item: |item| {
        format!(
            "第 {} 项：{}\n  原始文件 SHA-256：{}\n  导出文件：{}（{} 字节）\n  导出文件 SHA-256：{}\n  脱敏记录 SHA-256：{}\n  留存副本：public/{}\n",
            item.position,
            item.item,
            item.original_sha256,
            item.output_file,
            item.output_bytes,
            item.output_sha256,
            item.redaction_log_sha256,
            item.public_key
        )
    },
};

const EN_LABELS: ReceiptLabels = ReceiptLabels {
    title: "Disclosure receipt",
    colon: ": ",
    requester: "Requester",
    purpose: "Purpose",
    requested_at: "Requested at",
    approved_by: "Approved by",
    approved_at: "Approved at",
    exported_by: "Exported by",
    exported_at: "Exported at",
    watermark: "Watermark",
    item: |item| {
        format!(
            "Item {}: {}\n  original SHA-256: {}\n  exported file: {} ({} bytes)\n  exported SHA-256: {}\n  redaction log SHA-256: {}\n  kept copy: public/{}\n",
            item.position,
            item.item,
            item.original_sha256,
            item.output_file,
            item.output_bytes,
            item.output_sha256,
            item.redaction_log_sha256,
            item.public_key
        )
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            format: RECEIPT_FORMAT,
            request_id: "REQ-1".into(),
            requester: "zhao".into(),
            purpose: "litigation".into(),
            requested_at: "2026-12-01T08:00:00+00:00".into(),
            approved_by: Some("li".into()),
            approved_at: None,
            exported_by: "wang".into(),
            exported_at: "2026-12-02T09:30:00Z".parse().unwrap(),
            watermark: "公开副本 REQ-1".into(),
            items: vec![ExportedItem {
                position: 1,
                item: "abc".into(),
                original_sha256: "abc".into(),
                output_file: "REQ-1-1.mp4".into(),
                output_sha256: "def".into(),
                output_bytes: 42,
                redaction_log_sha256: "0123".into(),
                public_key: "disclosures/REQ-1/1.mp4".into(),
                method: Method::Smart,
                frames: 10,
                frames_masked: 3,
            }],
        }
    }

    #[test]
    fn text_lists_every_field_in_both_languages() {
        let text = receipt().render_text();
        let (zh, en) = text.split_once("\n\n").expect("a blank line between the languages");
        assert!(zh.starts_with("音像资料调取回执 REQ-1\n"), "{zh}");
        assert!(zh.contains("用途：行政诉讼\n"), "{zh}");
        assert!(zh.contains("审批人：li\n审批时间：-\n"), "{zh}");
        assert!(zh.contains("导出时间：2026-12-02T09:30:00+00:00\n"), "{zh}");
        assert!(zh.contains("导出文件：REQ-1-1.mp4（42 字节）"), "{zh}");
        assert!(en.starts_with("Disclosure receipt REQ-1\n"), "{en}");
        assert!(en.contains("Purpose: litigation\n"), "{en}");
        assert!(en.contains("Approved by: li\nApproved at: -\n"), "{en}");
        assert!(en.contains("exported file: REQ-1-1.mp4 (42 bytes)"), "{en}");
        assert!(en.ends_with("kept copy: public/disclosures/REQ-1/1.mp4\n"), "{en}");
    }
}
