//! Justifications: why recording stopped, noted against a gap.
//!
//! The bureau's rules (Article 6) allow recording to stop only to protect
//! state secrets, trade secrets or personal privacy, for weather or other
//! natural causes, or for force majeure, and require the reason and its
//! basis to be noted. A justification names a gap by the id that `check`
//! and `process` print (`DEVICE@LOCAL-START`), a reason code, a basis text
//! and the actor. Justifications are only added, never changed: the latest
//! one of a gap is the one reports show, and the earlier ones stay in the
//! catalog as its history.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError};
use crate::i18n::Text;

/// Longest basis text accepted: a paragraph citing a document, not a file.
pub const MAX_BASIS_CHARS: usize = 2000;

/// Reasons Article 6 accepts for a stop in recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Reason {
    /// State or trade secrets, or personal privacy.
    SecretOrPrivacy,
    /// Weather or another natural cause.
    WeatherOrNatural,
    ForceMajeure,
    Other,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::SecretOrPrivacy => "secret_or_privacy",
            Reason::WeatherOrNatural => "weather_or_natural",
            Reason::ForceMajeure => "force_majeure",
            Reason::Other => "other",
        }
    }

    pub fn label(self) -> Text {
        match self {
            Reason::SecretOrPrivacy => {
                Text::new("涉及国家秘密、商业秘密或个人隐私", "secret or privacy")
            }
            Reason::WeatherOrNatural => Text::new("天气或其他自然原因", "weather or natural cause"),
            Reason::ForceMajeure => Text::new("不可抗力", "force majeure"),
            Reason::Other => Text::new("其他原因", "other"),
        }
    }
}

impl FromStr for Reason {
    type Err = Text;

    fn from_str(text: &str) -> Result<Reason, Text> {
        match text {
            "secret_or_privacy" => Ok(Reason::SecretOrPrivacy),
            "weather_or_natural" => Ok(Reason::WeatherOrNatural),
            "force_majeure" => Ok(Reason::ForceMajeure),
            "other" => Ok(Reason::Other),
            _ => Err(Text::new(
                format!("未知的理由 {text:?}，可用：secret_or_privacy、weather_or_natural、force_majeure、other"),
                format!(
                    "unknown reason {text:?}; expected secret_or_privacy, weather_or_natural, force_majeure or other"
                ),
            )),
        }
    }
}

/// A justification as reports show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Justification {
    pub gap_id: String,
    pub reason: Reason,
    pub basis: String,
    pub actor: String,
    pub recorded_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JustifyError {
    #[error("gap {gap_id} is not in the catalog")]
    UnknownGap { gap_id: String, known: Vec<String> },
    #[error("the basis of gap {gap_id} is empty or too long")]
    InvalidBasis { gap_id: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl JustifyError {
    pub fn message(&self) -> Text {
        match self {
            JustifyError::UnknownGap { gap_id, known } => {
                let listed = if known.is_empty() {
                    "-".to_string()
                } else {
                    known.join(", ")
                };
                Text::new(
                    format!("目录库中没有中断 {gap_id}：请先用 evidence process 处理该录像，并使用 check 或 process 报告中的中断编号。该设备已知的中断：{listed}"),
                    format!("gap {gap_id} is not in the catalog: process the recording with `evidence process` first and use a gap id printed by check or process. Known gaps of this device: {listed}"),
                )
            }
            JustifyError::InvalidBasis { gap_id } => Text::new(
                format!("中断 {gap_id} 的依据为空或超过 {MAX_BASIS_CHARS} 个字符：请写明停止录制的依据（文件、批准人或情况说明）"),
                format!("the basis for gap {gap_id} is empty or longer than {MAX_BASIS_CHARS} characters: state what the stop rests on (a document, an approver or an account of events)"),
            ),
            JustifyError::Catalog(error) => Text::new(format!("目录库错误：{error}"), format!("catalog error: {error}")),
        }
    }
}

/// Records a justification for a gap the catalog knows.
pub fn justify(
    catalog: &Catalog,
    gap_id: &str,
    reason: Reason,
    basis: &str,
    actor: &str,
) -> Result<Justification, JustifyError> {
    let basis = basis.trim();
    if basis.is_empty() || basis.chars().count() > MAX_BASIS_CHARS {
        return Err(JustifyError::InvalidBasis {
            gap_id: gap_id.to_string(),
        });
    }
    if !catalog.has_gap(gap_id)? {
        let device = gap_id.split('@').next().unwrap_or(gap_id);
        let known = catalog.gap_ids_of_device(device)?;
        return Err(JustifyError::UnknownGap {
            gap_id: gap_id.to_string(),
            known,
        });
    }

    let justification = Justification {
        gap_id: gap_id.to_string(),
        reason,
        basis: basis.to_string(),
        actor: actor.to_string(),
        recorded_at: chrono::Utc::now().to_rfc3339(),
    };
    catalog.add_justification(
        &justification.gap_id,
        justification.reason.code(),
        &justification.basis,
        &justification.actor,
        &justification.recorded_at,
    )?;
    let detail = serde_json::json!({ "reason": reason.code(), "basis": basis });
    crate::audit::record_as(catalog, actor, crate::audit::Action::Justify, gap_id, detail).map_err(crate::audit::AuditError::into_catalog)?;
    tracing::info!(gap = %gap_id, reason = reason.code(), actor, "gap justified");
    Ok(justification)
}

/// Returns the latest justification of each gap, by gap id.
pub fn latest_justifications(
    catalog: &Catalog,
) -> Result<std::collections::HashMap<String, Justification>, CatalogError> {
    let mut latest = std::collections::HashMap::new();
    for row in catalog.justifications()? {
        let Ok(reason) = row.reason.parse::<Reason>() else {
            continue;
        };
        latest.insert(
            row.gap_id.clone(),
            Justification {
                gap_id: row.gap_id,
                reason,
                basis: row.basis,
                actor: row.actor,
                recorded_at: row.recorded_at,
            },
        );
    }
    Ok(latest)
}
