//! The redaction spec: what to hide in one recording, where, when and why.
//!
//! A spec is JSON written by disclosure staff or a tool. Masks are shapes
//! (rectangles, ellipses) whose position and size are keyed over time in
//! display coordinates, that is after the recording's rotation, because
//! that is the picture a person marks up. Between keys a mask moves
//! linearly; before its first key and after its last it holds still. Audio
//! items mute a range or replace it with a tone. Every item carries the
//! reason it is hidden (Article 17 of the bureau's rules: state secret,
//! trade secret, personal privacy) and who decided it.
//!
//! Validation names the failing field (`masks[0].keyframes[1].width`) in
//! Chinese and English, so a wrong spec is fixed without guessing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::i18n::Text;

/// Largest spec file read: thousands of keyframes fit in far less, and a
/// bigger file is a mistake (a video passed as the spec).
const MAX_SPEC_BYTES: u64 = 16 << 20;

/// Default pixelation cell in pixels: at 1080p a face becomes a handful
/// of cells, which hides identity.
pub const DEFAULT_CELL: u32 = 16;

/// Smallest pixelation cell: a 1-pixel cell hides nothing.
const MIN_CELL: u32 = 4;

/// Default blur radius in pixels; a box blur of this radius run three
/// times removes the detail of text and faces at 1080p.
pub const DEFAULT_BLUR_RADIUS: u32 = 24;

/// Largest blur radius and pixelation cell; larger values are typing
/// errors, since a solid mask hides more than any blur.
const MAX_STYLE_PIXELS: u32 = 512;

/// Default frequency of a replacement tone: the 1 kHz "bleep" of broadcast
/// censorship.
pub const DEFAULT_TONE_HZ: f64 = 1000.0;

/// Largest coordinate accepted; 8K video is 7680 wide.
const MAX_COORDINATE: f64 = 100_000.0;

/// Why an item is hidden.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    StateSecret,
    TradeSecret,
    PersonalPrivacy,
    Other,
}

impl Reason {
    pub fn text(self) -> Text {
        match self {
            Reason::StateSecret => Text::new("国家秘密", "state secret"),
            Reason::TradeSecret => Text::new("商业秘密", "trade secret"),
            Reason::PersonalPrivacy => Text::new("个人隐私", "personal privacy"),
            Reason::Other => Text::new("其他", "other"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Rectangle,
    Ellipse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    Blur,
    Pixelate,
    Solid,
}

/// A mask's position and size at one moment, in display pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyframe {
    /// Seconds on the recording's presentation timeline (as a player
    /// shows it, 0 at the first frame's position).
    #[serde(default)]
    pub at: f64,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// One region hidden over time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mask {
    /// Optional label for the redaction log; defaults to `mask-N`.
    #[serde(default)]
    pub id: Option<String>,
    pub shape: Shape,
    pub style: Style,
    /// Solid fill colour as `#RRGGBB`; black when absent.
    #[serde(default)]
    pub color: Option<String>,
    /// Pixelation cell edge in pixels.
    #[serde(default)]
    pub cell: Option<u32>,
    /// Blur radius in pixels.
    #[serde(default)]
    pub radius: Option<u32>,
    /// Pixels added on every side of the keyed box.
    #[serde(default)]
    pub padding: f64,
    /// Start of the mask in seconds; from the beginning when absent.
    #[serde(default)]
    pub from: Option<f64>,
    /// End of the mask in seconds (exclusive); to the end when absent.
    #[serde(default)]
    pub to: Option<f64>,
    pub keyframes: Vec<Keyframe>,
    pub reason: Reason,
    /// Free-text legal basis or note, kept in the redaction log.
    #[serde(default)]
    pub basis: Option<String>,
    pub author: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioAction {
    Mute,
    Tone,
}

/// One audio range silenced or replaced by a tone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioRange {
    #[serde(default)]
    pub id: Option<String>,
    pub from: f64,
    pub to: f64,
    pub action: AudioAction,
    /// Tone frequency in Hz for `tone`.
    #[serde(default)]
    pub tone_hz: Option<f64>,
    pub reason: Reason,
    #[serde(default)]
    pub basis: Option<String>,
    pub author: String,
}

/// A whole redaction spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub masks: Vec<Mask>,
    #[serde(default)]
    pub audio: Vec<AudioRange>,
}

/// A spec that cannot be used, with the field at fault.
#[derive(Debug, Error)]
pub enum SpecError {
    #[error("cannot read redaction spec {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("redaction spec {path} is larger than {MAX_SPEC_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("redaction spec: {field}: {}", message.en)]
    Invalid { field: String, message: Text },
}

impl SpecError {
    /// The error in both languages, with the field named in each.
    pub fn message(&self) -> Text {
        match self {
            SpecError::Read { path, source } => Text::new(
                format!("无法读取脱敏规格 {}：{source}", path.display()),
                self.to_string(),
            ),
            SpecError::TooLarge { path } => Text::new(
                format!("脱敏规格 {} 超过 {MAX_SPEC_BYTES} 字节", path.display()),
                self.to_string(),
            ),
            SpecError::Invalid { field, message } => Text::new(
                format!("脱敏规格字段 {field}：{}", message.zh),
                format!("redaction spec field {field}: {}", message.en),
            ),
        }
    }
}

fn invalid(field: impl Into<String>, zh: impl Into<String>, en: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        message: Text::new(zh, en),
    }
}

impl Spec {
    /// Reads and validates a spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let read_error = |source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(read_error)?.len();
        if bytes > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Spec::parse(&text)
    }

    /// Parses and validates spec text.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let spec: Spec = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let field = match e.path().to_string() {
                path if path == "." => "(document)".to_string(),
                path => path,
            };
            let detail = e.inner().to_string();
            invalid(
                field,
                format!("格式错误：{detail}"),
                format!("invalid: {detail}"),
            )
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every value a parser cannot: ranges, order, required text.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.masks.is_empty() && self.audio.is_empty() {
            return Err(invalid(
                "masks",
                "规格中没有任何遮罩或音频处理项",
                "the spec has no mask and no audio range",
            ));
        }
        for (i, mask) in self.masks.iter().enumerate() {
            validate_mask(&format!("masks[{i}]"), mask)?;
        }
        for (i, range) in self.audio.iter().enumerate() {
            validate_audio(&format!("audio[{i}]"), range)?;
        }
        Ok(())
    }

    /// Returns whether the spec mutes or replaces any audio.
    pub fn has_audio_items(&self) -> bool {
        !self.audio.is_empty()
    }
}

fn validate_author(field: &str, author: &str) -> Result<(), SpecError> {
    if author.trim().is_empty() {
        return Err(invalid(
            format!("{field}.author"),
            "必须填写决定此项的人",
            "must name the person who decided this item",
        ));
    }
    Ok(())
}

fn validate_time(field: &str, value: f64) -> Result<(), SpecError> {
    if !value.is_finite() || value < 0.0 {
        return Err(invalid(
            field,
            format!("必须是不小于 0 的秒数，实际为 {value}"),
            format!("must be seconds not below 0, found {value}"),
        ));
    }
    Ok(())
}

fn validate_range(field: &str, from: Option<f64>, to: Option<f64>) -> Result<(), SpecError> {
    if let Some(from) = from {
        validate_time(&format!("{field}.from"), from)?;
    }
    if let Some(to) = to {
        validate_time(&format!("{field}.to"), to)?;
    }
    if let (Some(from), Some(to)) = (from, to) {
        if to <= from {
            return Err(invalid(
                format!("{field}.to"),
                format!("结束时间 {to} 必须晚于开始时间 {from}"),
                format!("end {to} must be later than start {from}"),
            ));
        }
    }
    Ok(())
}

fn validate_mask(field: &str, mask: &Mask) -> Result<(), SpecError> {
    validate_author(field, &mask.author)?;
    validate_range(field, mask.from, mask.to)?;
    if !mask.padding.is_finite() || !(0.0..=MAX_COORDINATE).contains(&mask.padding) {
        return Err(invalid(
            format!("{field}.padding"),
            format!(
                "必须是 0 到 {MAX_COORDINATE} 之间的像素数，实际为 {}",
                mask.padding
            ),
            format!(
                "must be pixels from 0 to {MAX_COORDINATE}, found {}",
                mask.padding
            ),
        ));
    }
    validate_style(field, mask)?;

    if mask.keyframes.is_empty() {
        return Err(invalid(
            format!("{field}.keyframes"),
            "至少需要一个关键帧（位置和大小）",
            "needs at least one keyframe (position and size)",
        ));
    }
    let mut previous: Option<f64> = None;
    for (k, key) in mask.keyframes.iter().enumerate() {
        let key_field = format!("{field}.keyframes[{k}]");
        validate_time(&format!("{key_field}.at"), key.at)?;
        if let Some(previous) = previous {
            if key.at <= previous {
                return Err(invalid(
                    format!("{key_field}.at"),
                    format!("关键帧时间必须递增：{} 不晚于前一个 {previous}", key.at),
                    format!(
                        "keyframe times must increase: {} is not after the previous {previous}",
                        key.at
                    ),
                ));
            }
        }
        previous = Some(key.at);
        for (name, value) in [("x", key.x), ("y", key.y)] {
            if !value.is_finite() || value.abs() > MAX_COORDINATE {
                return Err(invalid(
                    format!("{key_field}.{name}"),
                    format!("必须是绝对值不超过 {MAX_COORDINATE} 的像素坐标，实际为 {value}"),
                    format!("must be a pixel coordinate within ±{MAX_COORDINATE}, found {value}"),
                ));
            }
        }
        for (name, value) in [("width", key.width), ("height", key.height)] {
            if !value.is_finite() || value <= 0.0 || value > MAX_COORDINATE {
                return Err(invalid(
                    format!("{key_field}.{name}"),
                    format!("必须是大于 0 且不超过 {MAX_COORDINATE} 的像素数，实际为 {value}"),
                    format!("must be pixels above 0 and at most {MAX_COORDINATE}, found {value}"),
                ));
            }
        }
    }
    Ok(())
}

fn validate_style(field: &str, mask: &Mask) -> Result<(), SpecError> {
    let misplaced = |name: &str, style: &str| {
        invalid(
            format!("{field}.{name}"),
            format!("只适用于 {style} 样式"),
            format!("applies only to the {style} style"),
        )
    };
    if mask.color.is_some() && mask.style != Style::Solid {
        return Err(misplaced("color", "solid"));
    }
    if mask.cell.is_some() && mask.style != Style::Pixelate {
        return Err(misplaced("cell", "pixelate"));
    }
    if mask.radius.is_some() && mask.style != Style::Blur {
        return Err(misplaced("radius", "blur"));
    }
    if let Some(color) = &mask.color {
        parse_color(color).ok_or_else(|| {
            invalid(
                format!("{field}.color"),
                format!("必须是 #RRGGBB 形式的颜色，实际为 {color:?}"),
                format!("must be a colour as #RRGGBB, found {color:?}"),
            )
        })?;
    }
    if let Some(cell) = mask.cell {
        if !(MIN_CELL..=MAX_STYLE_PIXELS).contains(&cell) {
            return Err(invalid(
                format!("{field}.cell"),
                format!("必须在 {MIN_CELL} 到 {MAX_STYLE_PIXELS} 像素之间，实际为 {cell}"),
                format!("must be from {MIN_CELL} to {MAX_STYLE_PIXELS} pixels, found {cell}"),
            ));
        }
    }
    if let Some(radius) = mask.radius {
        if !(1..=MAX_STYLE_PIXELS).contains(&radius) {
            return Err(invalid(
                format!("{field}.radius"),
                format!("必须在 1 到 {MAX_STYLE_PIXELS} 像素之间，实际为 {radius}"),
                format!("must be from 1 to {MAX_STYLE_PIXELS} pixels, found {radius}"),
            ));
        }
    }
    Ok(())
}

fn validate_audio(field: &str, range: &AudioRange) -> Result<(), SpecError> {
    validate_author(field, &range.author)?;
    validate_range(field, Some(range.from), Some(range.to))?;
    if range.tone_hz.is_some() && range.action != AudioAction::Tone {
        return Err(invalid(
            format!("{field}.tone_hz"),
            "只适用于 tone 处理",
            "applies only to the tone action",
        ));
    }
    if let Some(hz) = range.tone_hz {
        if !hz.is_finite() || !(20.0..=20_000.0).contains(&hz) {
            return Err(invalid(
                format!("{field}.tone_hz"),
                format!("必须是 20 到 20000 之间的可听频率，实际为 {hz}"),
                format!("must be an audible frequency from 20 to 20000 Hz, found {hz}"),
            ));
        }
    }
    Ok(())
}

/// Parses `#RRGGBB` into RGB.
pub fn parse_color(text: &str) -> Option<[u8; 3]> {
    let hex = text.strip_prefix('#')?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([channel(0)?, channel(2)?, channel(4)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXED_RECTANGLE: &str = r#"{"masks":[{"shape":"rectangle","style":"solid",
        "keyframes":[{"x":100,"y":80,"width":120,"height":90}],
        "reason":"personal_privacy","author":"130631001"}]}"#;

    #[test]
    fn example_fixture_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/redact-example.json");
        let spec = Spec::load(&path).unwrap();
        assert_eq!(spec.masks.len(), 1);
        assert_eq!(spec.masks[0].style, Style::Solid);
        assert_eq!(spec.masks[0].keyframes.len(), 1);
    }

    #[test]
    fn fixed_rectangle_parses() {
        let spec = Spec::parse(FIXED_RECTANGLE).unwrap();
        assert_eq!(spec.masks[0].keyframes[0].width, 120.0);
        assert_eq!(spec.masks[0].reason, Reason::PersonalPrivacy);
    }

    #[test]
    fn zero_width_is_named_in_both_languages() {
        let text = FIXED_RECTANGLE.replace("\"width\":120", "\"width\":0");
        let error = Spec::parse(&text).unwrap_err();
        let message = error.message();
        assert!(
            message.en.contains("masks[0].keyframes[0].width"),
            "{}",
            message.en
        );
        assert!(
            message.zh.contains("masks[0].keyframes[0].width"),
            "{}",
            message.zh
        );
        assert!(message.zh.contains("大于 0"), "{}", message.zh);
    }

    #[test]
    fn unknown_reason_is_named() {
        let text = FIXED_RECTANGLE.replace("personal_privacy", "because");
        let message = Spec::parse(&text).unwrap_err().message();
        assert!(message.en.contains("masks[0].reason"), "{}", message.en);
    }

    #[test]
    fn missing_author_is_rejected() {
        let text = FIXED_RECTANGLE.replace("\"130631001\"", "\"  \"");
        let message = Spec::parse(&text).unwrap_err().message();
        assert!(message.en.contains("masks[0].author"), "{}", message.en);
    }

    #[test]
    fn keyframes_out_of_order_are_rejected() {
        let text = r#"{"masks":[{"shape":"ellipse","style":"blur","keyframes":[
            {"at":2,"x":0,"y":0,"width":10,"height":10},
            {"at":1,"x":0,"y":0,"width":10,"height":10}],
            "reason":"trade_secret","author":"a"}]}"#;
        let message = Spec::parse(text).unwrap_err().message();
        assert!(
            message.en.contains("masks[0].keyframes[1].at"),
            "{}",
            message.en
        );
    }

    #[test]
    fn audio_range_must_end_after_start() {
        let text = r#"{"audio":[{"from":3,"to":2,"action":"mute","reason":"other","author":"a"}]}"#;
        let message = Spec::parse(text).unwrap_err().message();
        assert!(message.en.contains("audio[0].to"), "{}", message.en);
    }

    #[test]
    fn style_option_of_another_style_is_rejected() {
        let text = FIXED_RECTANGLE.replace("\"style\":\"solid\"", "\"style\":\"blur\",\"cell\":8");
        let message = Spec::parse(&text).unwrap_err().message();
        assert!(message.en.contains("masks[0].cell"), "{}", message.en);
    }

    #[test]
    fn empty_spec_is_rejected() {
        assert!(Spec::parse("{}").is_err());
    }
}
