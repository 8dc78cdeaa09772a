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
        let none = String::from("-");
        let mut out = String::new();
        out.push_str(&format!("音像资料调取回执 {}\n", self.request_id));
        out.push_str(&format!(
            "申请人：{}\n用途：{}\n申请时间：{}\n",
            self.requester, purpose.zh, self.requested_at
        ));
        out.push_str(&format!(
            "审批人：{}\n审批时间：{}\n导出人：{}\n导出时间：{}\n水印：{}\n",
            self.approved_by.as_ref().unwrap_or(&none),
            self.approved_at.as_ref().unwrap_or(&none),
            self.exported_by,
            self.exported_at.to_rfc3339(),
            self.watermark
        ));
        for item in &self.items {
            out.push_str(&format!(
                "第 {} 项：{}\n  原始文件 SHA-256：{}\n  导出文件：{}（{} 字节）\n  导出文件 SHA-256：{}\n  脱敏记录 SHA-256：{}\n  留存副本：public/{}\n",
                item.position,
                item.item,
                item.original_sha256,
                item.output_file,
                item.output_bytes,
                item.output_sha256,
                item.redaction_log_sha256,
                item.public_key
            ));
        }
        out.push('\n');
        out.push_str(&format!("Disclosure receipt {}\n", self.request_id));
        out.push_str(&format!(
            "Requester: {}\nPurpose: {}\nRequested at: {}\n",
            self.requester, purpose.en, self.requested_at
        ));
        out.push_str(&format!(
            "Approved by: {}\nApproved at: {}\nExported by: {}\nExported at: {}\nWatermark: {}\n",
            self.approved_by.as_ref().unwrap_or(&none),
            self.approved_at.as_ref().unwrap_or(&none),
            self.exported_by,
            self.exported_at.to_rfc3339(),
            self.watermark
        ));
        for item in &self.items {
            out.push_str(&format!(
                "Item {}: {}\n  original SHA-256: {}\n  exported file: {} ({} bytes)\n  exported SHA-256: {}\n  redaction log SHA-256: {}\n  kept copy: public/{}\n",
                item.position,
                item.item,
                item.original_sha256,
                item.output_file,
                item.output_bytes,
                item.output_sha256,
                item.redaction_log_sha256,
                item.public_key
            ));
        }
        out
    }
}
