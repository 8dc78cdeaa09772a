//! The coverage picture: one PNG per case or session that shows at a
//! glance where footage exists and where it does not.
//!
//! ```text
//!            10:00:00      10:00:10      10:00:20      10:00:30
//!            |  U1           |  U2                          |
//! HB0631     ████████████████████████▌ 6.97 s ▐██████████████
//! ```
//!
//! One row per device: footage as green bars, unexplained gaps in red and
//! justified gaps in amber, each labelled with its length; units of the
//! case as shaded bands with their boundaries marked. Labels are drawn
//! with a CJK-capable system font (WenQuanYi Micro Hei, Noto Sans CJK or
//! Droid Sans Fallback, as Debian packages them) so that Chinese reads;
//! without one, an 8×8 bitmap font draws English labels in ASCII.

use std::io::Cursor;

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use image::{Rgb, RgbImage};

use crate::case::CaseRecord;
use crate::continuity::session::span_seconds;
use crate::continuity::ContinuityReport;

/// Fonts tried in order, after the file named by `EVIDENCE_FONT`. Each
/// covers Chinese; the paths are those of Debian's `fonts-wqy-microhei`,
/// `fonts-noto-cjk` and `fonts-droid-fallback` packages.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
];

/// Width of the picture: wide enough for a label on a one-second gap in a
/// recording of a few minutes, narrow enough for a report page.
const WIDTH: u32 = 1400;
const LEFT: u32 = 170;
const RIGHT: u32 = 40;
const TITLE_HEIGHT: u32 = 56;
const AXIS_HEIGHT: u32 = 56;
const ROW_HEIGHT: u32 = 64;
const BAR_HEIGHT: u32 = 26;
const LEGEND_HEIGHT: u32 = 50;

/// Tick spacings in seconds; the smallest that gives at most
/// [`MAX_TICKS`] ticks is used.
const TICK_STEPS: &[i64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600,
];
const MAX_TICKS: i64 = 10;

const SECONDS_PER_DAY: i64 = 86_400;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([33, 33, 33]);
const GRID: Rgb<u8> = Rgb([220, 220, 220]);
const FOOTAGE: Rgb<u8> = Rgb([46, 139, 87]);
const UNEXPLAINED: Rgb<u8> = Rgb([215, 38, 38]);
const JUSTIFIED: Rgb<u8> = Rgb([240, 160, 0]);
const UNIT_BANDS: [Rgb<u8>; 2] = [Rgb([226, 236, 250]), Rgb([240, 232, 250])];
const UNIT_EDGE: Rgb<u8> = Rgb([40, 70, 160]);

/// Renders the picture of a batch as PNG bytes.
pub fn render(
    report: &ContinuityReport,
    case: Option<&CaseRecord>,
    timezone: chrono_tz::Tz,
) -> Result<Vec<u8>, String> {
    let mut devices: Vec<&str> = report.sessions.iter().map(|s| s.device.as_str()).collect();
    devices.dedup();
    devices.sort_unstable();
    devices.dedup();

    let (from, to) = time_range(report, case).ok_or("nothing to draw: no footage and no units")?;
    let rows = devices.len().max(1) as u32;
    let height = TITLE_HEIGHT + AXIS_HEIGHT + rows * ROW_HEIGHT + LEGEND_HEIGHT;
    let mut canvas = Canvas::new(WIDTH, height, from, to);

    let title = match case {
        Some(case) => format!(
            "{}  {}",
            case.case_id,
            canvas.pick("录像覆盖时间轴", "coverage timeline")
        ),
        None => format!(
            "{}  {}",
            report.sessions[0].session_id,
            canvas.pick("录像覆盖时间轴", "coverage timeline")
        ),
    };
    canvas.text(12, 14, 24.0, INK, &title);
    let rows_top = TITLE_HEIGHT + AXIS_HEIGHT;
    let rows_bottom = rows_top + rows * ROW_HEIGHT;

    if let Some(case) = case {
        for (position, unit) in case.units.iter().enumerate() {
            let x0 = canvas.x(unit.from.with_timezone(&Utc));
            let x1 = canvas.x(unit.to.with_timezone(&Utc));
            canvas.rect(x0, rows_top - 22, x1, rows_bottom, UNIT_BANDS[position % 2]);
            let label = match &unit.name {
                Some(name) if canvas.font.is_some() => format!("{} {name}", unit.unit_id),
                _ => unit.unit_id.clone(),
            };
            canvas.text(x0 + 4, rows_top - 20, 16.0, UNIT_EDGE, &label);
        }
        for unit in &case.units {
            for edge in [unit.from, unit.to] {
                let x = canvas.x(edge.with_timezone(&Utc));
                canvas.rect(x - 1, rows_top - 22, x + 1, rows_bottom, UNIT_EDGE);
            }
        }
    }
    draw_axis(
        &mut canvas,
        timezone,
        TITLE_HEIGHT,
        rows_top - 24,
        rows_bottom,
    );

    for (row, device) in devices.iter().enumerate() {
        let top = rows_top + row as u32 * ROW_HEIGHT;
        let bar_top = top + (ROW_HEIGHT - BAR_HEIGHT) / 2 + 6;
        canvas.text(12, bar_top + 4, 18.0, INK, device);
        for session in report.sessions.iter().filter(|s| s.device == *device) {
            for (begin, end) in session.footage() {
                let (x0, x1) = (canvas.x(begin), canvas.x(end));
                canvas.rect(x0, bar_top, x1.max(x0 + 1), bar_top + BAR_HEIGHT, FOOTAGE);
            }
            // A thin white cut where each later chapter starts shows the files.
            for chapter in session.chapters.iter().skip(1) {
                let x = canvas.x(chapter.begin);
                canvas.rect(x, bar_top, x + 1, bar_top + BAR_HEIGHT, WHITE);
            }
            for gap in session.gaps() {
                let colour = if gap.justification.is_some() {
                    JUSTIFIED
                } else {
                    UNEXPLAINED
                };
                let (x0, x1) = (canvas.x(gap.from), canvas.x(gap.to));
                canvas.rect(x0, bar_top, x1.max(x0 + 2), bar_top + BAR_HEIGHT, colour);
                let label = format!("{:.2} s", gap.duration);
                let width = canvas.text_width(15.0, &label);
                let centre = (x0 + x1) / 2;
                canvas.text(
                    centre.saturating_sub(width / 2),
                    bar_top.saturating_sub(19),
                    15.0,
                    colour,
                    &label,
                );
            }
        }
        canvas.rect(
            LEFT,
            top + ROW_HEIGHT - 1,
            WIDTH - RIGHT,
            top + ROW_HEIGHT,
            GRID,
        );
    }
    if devices.is_empty() {
        let message = canvas
            .pick(
                "没有可排入时间轴的录像",
                "no footage placed on the wall clock",
            )
            .to_string();
        canvas.text(LEFT + 10, rows_top + 20, 18.0, UNEXPLAINED, &message);
    }

    draw_legend(&mut canvas, rows_bottom + 14);
    canvas.encode()
}

/// The drawn span: footage and units, with a small margin either side.
fn time_range(
    report: &ContinuityReport,
    case: Option<&CaseRecord>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut times: Vec<DateTime<Utc>> = report
        .sessions
        .iter()
        .flat_map(|s| [s.start, s.end])
        .collect();
    if let Some(case) = case {
        times.extend(
            case.units
                .iter()
                .flat_map(|u| [u.from.with_timezone(&Utc), u.to.with_timezone(&Utc)]),
        );
    }
    let from = *times.iter().min()?;
    let to = *times.iter().max()?;
    let span = span_seconds(from, to).max(1.0);
    let margin = Duration::milliseconds((span * 20.0) as i64);
    Some((from - margin, to + margin))
}

fn draw_axis(
    canvas: &mut Canvas,
    timezone: chrono_tz::Tz,
    top: u32,
    labels_bottom: u32,
    rows_bottom: u32,
) {
    let span = span_seconds(canvas.from, canvas.to);
    let step = tick_step(span);
    let label_format = tick_label_format(step, span);
    // Ticks fall on whole steps of local time, so day ticks land at midnight.
    let offset = i64::from(
        timezone
            .offset_from_utc_datetime(&canvas.from.naive_utc())
            .fix()
            .local_minus_utc(),
    );
    let first = ((canvas.from.timestamp() + offset).div_euclid(step) + 1) * step - offset;
    let mut tick = first;
    while tick as f64 <= canvas.to.timestamp() as f64 {
        let Some(time) = DateTime::<Utc>::from_timestamp(tick, 0) else {
            break;
        };
        let x = canvas.x(time);
        canvas.rect(x, labels_bottom - 8, x + 1, rows_bottom, GRID);
        let label = time.with_timezone(&timezone).format(label_format).to_string();
        let width = canvas.text_width(15.0, &label);
        canvas.text(x.saturating_sub(width / 2), top + 6, 15.0, INK, &label);
        tick += step;
    }
    let date = canvas
        .from
        .with_timezone(&timezone)
        .format("%Y-%m-%d %Z")
        .to_string();
    canvas.text(12, top + 6, 15.0, INK, &date);
}

/// Picks the tick spacing in seconds for a span: the smallest of
/// [`TICK_STEPS`] that gives at most [`MAX_TICKS`] ticks, else whole days,
/// so that a span of months or years still gets a readable axis.
fn tick_step(span: f64) -> i64 {
    TICK_STEPS
        .iter()
        .copied()
        .find(|s| span / (*s as f64) <= MAX_TICKS as f64)
        .unwrap_or_else(|| {
            let days = (span / (MAX_TICKS * SECONDS_PER_DAY) as f64).ceil().max(1.0);
            days as i64 * SECONDS_PER_DAY
        })
}

/// Picks the label format of a tick: the date once ticks are days apart,
/// the day and time when the span crosses days, else the time of day.
fn tick_label_format(step: i64, span: f64) -> &'static str {
    if step >= SECONDS_PER_DAY {
        "%Y-%m-%d"
    } else if span > SECONDS_PER_DAY as f64 {
        "%m-%d %H:%M"
    } else {
        "%H:%M:%S"
    }
}

fn draw_legend(canvas: &mut Canvas, top: u32) {
    let entries = [
        (FOOTAGE, canvas.pick("录像", "footage").to_string()),
        (
            UNEXPLAINED,
            canvas.pick("未说明的中断", "unexplained gap").to_string(),
        ),
        (
            JUSTIFIED,
            canvas.pick("已说明的中断", "justified gap").to_string(),
        ),
        (
            UNIT_EDGE,
            canvas.pick("检查单位边界", "unit boundary").to_string(),
        ),
    ];
    let mut x = LEFT;
    for (colour, label) in entries {
        canvas.rect(x, top + 4, x + 22, top + 20, colour);
        canvas.text(x + 28, top + 2, 16.0, INK, &label);
        x += 40 + canvas.text_width(16.0, &label);
    }
}

/// An image with a time axis and a text painter.
struct Canvas {
    image: RgbImage,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    font: Option<FontVec>,
}

impl Canvas {
    fn new(width: u32, height: u32, from: DateTime<Utc>, to: DateTime<Utc>) -> Canvas {
        Canvas {
            image: RgbImage::from_pixel(width, height, WHITE),
            from,
            to,
            font: load_font(),
        }
    }

    /// Bilingual label with a CJK font, English with the bitmap fallback.
    fn pick<'a>(&self, zh: &'a str, en: &'a str) -> std::borrow::Cow<'a, str> {
        if self.font.is_some() {
            format!("{zh} {en}").into()
        } else {
            en.into()
        }
    }

    fn x(&self, time: DateTime<Utc>) -> u32 {
        let span = span_seconds(self.from, self.to).max(1e-6);
        let share = (span_seconds(self.from, time) / span).clamp(0.0, 1.0);
        LEFT + (share * f64::from(WIDTH - LEFT - RIGHT)).round() as u32
    }

    fn rect(&mut self, x0: u32, y0: u32, x1: u32, y1: u32, colour: Rgb<u8>) {
        let (w, h) = self.image.dimensions();
        for y in y0.min(h)..y1.min(h) {
            for x in x0.min(w)..x1.min(w) {
                self.image.put_pixel(x, y, colour);
            }
        }
    }

    fn text_width(&self, size: f32, text: &str) -> u32 {
        match &self.font {
            Some(font) => {
                let scaled = font.as_scaled(PxScale::from(size));
                text.chars()
                    .map(|c| scaled.h_advance(font.glyph_id(c)))
                    .sum::<f32>()
                    .ceil() as u32
            }
            None => text.chars().count() as u32 * bitmap_scale(size) * 8,
        }
    }

    fn text(&mut self, x: u32, y: u32, size: f32, colour: Rgb<u8>, text: &str) {
        match self.font.take() {
            Some(font) => {
                self.draw_outline_text(&font, x, y, size, colour, text);
                self.font = Some(font);
            }
            None => self.draw_bitmap_text(x, y, size, colour, text),
        }
    }

    fn draw_outline_text(
        &mut self,
        font: &FontVec,
        x: u32,
        y: u32,
        size: f32,
        colour: Rgb<u8>,
        text: &str,
    ) {
        let scale = PxScale::from(size);
        let scaled = font.as_scaled(scale);
        let mut caret = x as f32;
        let baseline = y as f32 + scaled.ascent();
        for c in text.chars() {
            let id = font.glyph_id(c);
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(caret, baseline));
            caret += scaled.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                let px = bounds.min.x as i64 + i64::from(gx);
                let py = bounds.min.y as i64 + i64::from(gy);
                self.blend(px, py, colour, coverage);
            });
        }
    }

    fn draw_bitmap_text(&mut self, x: u32, y: u32, size: f32, colour: Rgb<u8>, text: &str) {
        use font8x8::UnicodeFonts;
        let scale = bitmap_scale(size);
        for (position, c) in text.chars().enumerate() {
            let c = if c.is_ascii() { c } else { '?' };
            let Some(rows) = font8x8::BASIC_FONTS.get(c) else {
                continue;
            };
            let left = i64::from(x) + (position as i64) * 8 * i64::from(scale);
            for (row, bits) in rows.iter().enumerate() {
                for column in 0..8 {
                    if bits & (1 << column) == 0 {
                        continue;
                    }
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = left + i64::from(column * scale + dx);
                            let py = i64::from(y) + (row as i64) * i64::from(scale) + i64::from(dy);
                            self.blend(px, py, colour, 1.0);
                        }
                    }
                }
            }
        }
    }

    fn blend(&mut self, x: i64, y: i64, colour: Rgb<u8>, coverage: f32) {
        let (w, h) = self.image.dimensions();
        if x < 0 || y < 0 || x >= i64::from(w) || y >= i64::from(h) {
            return;
        }
        let pixel = self.image.get_pixel_mut(x as u32, y as u32);
        let alpha = coverage.clamp(0.0, 1.0);
        for channel in 0..3 {
            let old = f32::from(pixel.0[channel]);
            let new = f32::from(colour.0[channel]);
            pixel.0[channel] = (old + (new - old) * alpha).round() as u8;
        }
    }

    fn encode(self) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        self.image
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    }
}

fn bitmap_scale(size: f32) -> u32 {
    ((size / 10.0).round() as u32).max(1)
}

/// Loads the first usable CJK font; None when there is none.
fn load_font() -> Option<FontVec> {
    let from_env = std::env::var("EVIDENCE_FONT").ok();
    let candidates = from_env
        .iter()
        .map(String::as_str)
        .chain(FONT_PATHS.iter().copied());
    for path in candidates {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        match FontVec::try_from_vec_and_index(bytes, 0) {
            Ok(font) => {
                tracing::debug!(path, "timeline font loaded");
                return Some(font);
            }
            Err(error) => tracing::debug!(path, %error, "font not usable"),
        }
    }
    tracing::warn!("no CJK font found; the timeline picture uses English ASCII labels (install fonts-wqy-microhei)");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_of_years_has_at_most_ten_ticks() {
        let span = 19.0 * 365.0 * SECONDS_PER_DAY as f64;
        let step = tick_step(span);
        assert_eq!(step % SECONDS_PER_DAY, 0, "step {step}");
        assert!(span / step as f64 <= MAX_TICKS as f64, "step {step}");
        assert_eq!(tick_label_format(step, span), "%Y-%m-%d");
    }

    #[test]
    fn axis_of_a_minute_keeps_second_ticks() {
        assert_eq!(tick_step(38.0), 5);
        assert_eq!(tick_label_format(5, 38.0), "%H:%M:%S");
    }

    #[test]
    fn axis_across_two_days_labels_the_day() {
        let span = 2.0 * SECONDS_PER_DAY as f64;
        let step = tick_step(span);
        assert_eq!(step, 21_600);
        assert_eq!(tick_label_format(step, span), "%m-%d %H:%M");
    }
}
