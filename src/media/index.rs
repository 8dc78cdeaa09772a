//! Container index types shared by the MP4 and MPEG-TS readers, and the
//! format sniffer that dispatches to them.
//!
//! The continuity stage judges gaps, timestamp jumps, dropped frames and
//! truncation from the timing tables that the camera wrote into the
//! container, because a demuxer (GStreamer's `tsdemux`, for one) smooths
//! jumps away before anyone can see them. So these types carry every sample's
//! timestamps exactly as written, in the track's own timescale, plus a list of
//! what is wrong with the container itself. Nothing here corrects anything.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{mp4, ts};
use crate::i18n::Text;

/// Bytes read from the start of a file to decide its format: enough for five
/// 192-byte transport packets plus the 188 bytes a resync may skip.
const SNIFF_BYTES: usize = 5 * 192 + 188;

/// Consecutive sync bytes needed to call a file MPEG-TS. One 0x47 byte is
/// common in any binary file, but five at a fixed stride are not.
const TS_SYNC_PACKETS_REQUIRED: usize = 5;

/// Top-level box types that an MP4/QuickTime file may start with.
const MP4_FIRST_BOX_TYPES: [&[u8; 4]; 7] = [
    b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot",
];

/// Container format of an indexed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerFormat {
    Mp4,
    MpegTs,
}

/// Index of one container file: its tracks, each sample's timing and the
/// problems found in the container structure.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct ContainerIndex {
    pub format: ContainerFormat,
    /// MP4 major brand from `ftyp`, such as `isom` or `qt  `.
    pub brand: Option<String>,
    /// `mvhd` creation time as UNIX seconds. A camera whose clock was never
    /// set writes 0, which is 1904-01-01 and so -2082844800 here.
    pub creation_time: Option<i64>,
    /// `mvhd` timescale, the unit of every [`Edit::segment_duration`].
    pub movie_timescale: Option<u32>,
    /// True when the file carries `mvex` or at least one `moof`.
    pub is_fragmented: bool,
    /// Size of the file in bytes when it was read.
    pub file_size: u64,
    pub tracks: Vec<TrackIndex>,
    /// Defects of the container itself, in the order they were found.
    pub problems: Vec<IndexProblem>,
}

/// Track kind, decided from the handler type code (MP4) or stream type (TS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Video,
    Audio,
    Timecode,
    Metadata,
    Subtitle,
    Other,
}

impl TrackKind {
    /// Maps an MP4 `hdlr` handler type code to a kind.
    ///
    /// Only the four-byte code counts: handler names are free text, and
    /// GoPro's even start with a length byte (a TAB for "\tGoPro MET").
    pub fn from_handler_type(handler_type: &[u8; 4]) -> TrackKind {
        match handler_type {
            b"vide" | b"auxv" | b"pict" => TrackKind::Video,
            b"soun" => TrackKind::Audio,
            b"tmcd" => TrackKind::Timecode,
            b"meta" | b"camm" | b"mett" => TrackKind::Metadata,
            b"text" | b"sbtl" | b"subt" | b"clcp" => TrackKind::Subtitle,
            _ => TrackKind::Other,
        }
    }
}

/// One `elst` entry.
///
/// `segment_duration` stays in the movie timescale as written, and
/// `movie_timescale` is copied next to it so that each entry converts on its
/// own. `media_time` is in the track's timescale.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Edit {
    /// Duration of this edit on the presentation timeline, in movie timescale
    /// units. Zero on the last edit means "to the end of the media", as
    /// fragmented files write it.
    pub segment_duration: u64,
    /// `mvhd` timescale, or 0 when the file has no usable `mvhd`.
    pub movie_timescale: u32,
    /// First media time shown by this edit, in track timescale units. The
    /// value -1 marks an empty edit, which delays everything after it.
    pub media_time: i64,
    /// Playback rate: 1.0 for normal play, 0.0 for a dwell on one frame.
    pub media_rate: f64,
}

impl Edit {
    /// Returns true for an empty edit (a delay with no media shown).
    pub fn is_empty_edit(&self) -> bool {
        self.media_time == -1
    }

    /// Returns the segment duration in seconds, or None when the movie
    /// timescale is unknown.
    pub fn segment_seconds(&self) -> Option<f64> {
        (self.movie_timescale != 0)
            .then(|| self.segment_duration as f64 / f64::from(self.movie_timescale))
    }
}

/// Index of one track (MP4) or elementary stream (TS).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct TrackIndex {
    /// 0-based position in the file.
    pub index: usize,
    /// `tkhd` track_ID, or the TS PID.
    pub id: u32,
    pub kind: TrackKind,
    /// Handler type fourcc such as `vide`, or for TS the stream_type as `0x1b`.
    pub handler_type: String,
    pub handler_name: Option<String>,
    /// Sample entry fourcc (`avc1`, `hvc1`, `mp4a`, `tmcd`, `gpmd`, ...). For
    /// TS, a codec name derived from stream_type (`h264`, `aac`, `klv`, ...).
    pub codec: String,
    /// Ticks per second of every time value in this track (90000 for TS).
    pub timescale: u32,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Clockwise display rotation in degrees (0, 90, 180 or 270) from the
    /// `tkhd` matrix.
    pub rotation: u32,
    /// `mdhd` duration in track timescale units.
    pub declared_duration: Option<u64>,
    pub edits: Vec<Edit>,
    /// Samples in decode order. Samples whose bytes lie past the end of the
    /// file are left out (see [`IndexProblem::Truncated`]). For TS, each
    /// sample is one PES packet, which may carry several audio frames.
    pub samples: Vec<Sample>,
    /// Number of samples the index declares: the `stsz` count plus every
    /// accepted `trun` count (MP4), or the PES packets started (TS).
    pub declared_samples: u64,
    /// TS only: packets whose continuity_counter skipped, each one or more
    /// lost packets. Always 0 for MP4.
    pub continuity_errors: u64,
}

/// Timing and location of one sample (MP4) or PES packet (TS).
///
/// Times are in the track's timescale. For TS, `dts` and `pts` are the PES
/// values with the 33-bit wrap undone per stream (`dts` equals `pts` when the
/// PES has no DTS) and `duration` is 0 because a PES header does not carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Sample {
    pub dts: i64,
    pub pts: i64,
    pub duration: u32,
    /// Payload size in bytes: the MP4 sample size, or the PES payload bytes
    /// actually carried by the TS packets.
    pub size: u32,
    /// Byte offset of the sample (MP4) or of the first TS packet of the PES.
    pub offset: u64,
    pub is_sync: bool,
}

/// Defect of the container itself, stated for an operator in Chinese and
/// English. Box names, offsets and PIDs stay as written in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexProblem {
    /// The recording was never closed: no `moov` (power loss), or an
    /// incomplete last movie fragment.
    NotFinalized { reason: Text },
    /// The index points past the end of the file. Samples whose bytes are not
    /// wholly in the file were dropped from the track's `samples`.
    Truncated {
        track: usize,
        declared_samples: u64,
        present_samples: u64,
        data_end: u64,
    },
    /// A broken box or table, or a damaged packet stream.
    Malformed { reason: Text },
}

/// Most problems listed for one file. A fuzzed file can repeat one defect
/// millions of times, and an operator needs the first few, not all of them.
const MAX_LISTED_PROBLEMS: usize = 200;

/// Collects problems for one file, listing at most [`MAX_LISTED_PROBLEMS`]
/// and counting the rest.
#[derive(Debug, Default)]
pub(crate) struct ProblemLog {
    problems: Vec<IndexProblem>,
    omitted: u64,
}

impl ProblemLog {
    pub(crate) fn push(&mut self, problem: IndexProblem) {
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.omitted += 1;
        }
    }

    /// Records a broken box, table or packet stream, described in Chinese
    /// (`zh`) and English (`en`).
    pub(crate) fn malformed(&mut self, zh: impl Into<String>, en: impl Into<String>) {
        self.push(IndexProblem::Malformed {
            reason: Text::new(zh, en),
        });
    }

    /// Returns the listed problems, ending with a count of omitted ones.
    pub(crate) fn into_problems(mut self) -> Vec<IndexProblem> {
        if self.omitted > 0 {
            self.problems.push(IndexProblem::Malformed {
                reason: Text::new(
                    format!("另有 {} 个问题未列出", self.omitted),
                    format!(
                        "{} further problems were found and are not listed",
                        self.omitted
                    ),
                ),
            });
        }
        self.problems
    }
}

/// Failure to produce any index for a file.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither MP4/QuickTime nor MPEG-TS: no known box at offset 0 and no 0x47 sync byte every 188 or 192 bytes")]
    UnknownFormat { path: PathBuf },
    #[error("{path} cannot be parsed: {}", reason.en)]
    Unparseable { path: PathBuf, reason: Text },
}

impl IndexError {
    /// Returns the message in Chinese and English. `Display` gives the
    /// English one alone, for logs.
    pub fn text(&self) -> Text {
        match self {
            IndexError::Io { path, source } => {
                let path = path.display();
                Text::new(
                    format!("读取 {path} 失败：{}", io_error_zh(source)),
                    format!("failed to read {path}: {source}"),
                )
            }
            IndexError::UnknownFormat { path } => Text::new(
                format!(
                    "{} 既不是 MP4/QuickTime 也不是 MPEG-TS：偏移 0 处没有已知的 box，也没有每隔 188 或 192 字节出现的 0x47 同步字节",
                    path.display()
                ),
                self.to_string(),
            ),
            IndexError::Unparseable { path, reason } => Text::new(
                format!("无法解析 {}：{}", path.display(), reason.zh),
                self.to_string(),
            ),
        }
    }
}

/// Describes the common I/O failures in Chinese. Other kinds keep the
/// operating system's own message, which has no Chinese form here.
fn io_error_zh(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "文件不存在".to_string(),
        std::io::ErrorKind::PermissionDenied => "没有读取权限".to_string(),
        std::io::ErrorKind::UnexpectedEof => "文件意外结束".to_string(),
        _ => error.to_string(),
    }
}

impl TrackIndex {
    /// Returns the time in seconds at which this track's first sample is
    /// shown, after the edit list.
    ///
    /// A leading empty edit delays the start, and a `media_time` above the
    /// first sample's PTS hides preroll. When the edit list shows no sample,
    /// returns the delay of the leading empty edits. Returns 0.0 for a track
    /// without samples or edits, or with a zero timescale.
    pub fn presentation_start(&self) -> f64 {
        if self.timescale == 0 {
            return 0.0;
        }
        match self.presented_ticks() {
            Some(times) => times
                .iter()
                .map(|time| time.to_seconds(self.timescale))
                .fold(None, |min: Option<f64>, t| {
                    Some(min.map_or(t, |m| m.min(t)))
                })
                .unwrap_or_else(|| self.leading_empty_edit_seconds()),
            None => self
                .samples
                .iter()
                .map(|s| s.pts)
                .min()
                .map_or(0.0, |pts| pts as f64 / f64::from(self.timescale)),
        }
    }

    /// Returns the presentation time in seconds of every sample that the edit
    /// list shows, sorted ascending. Without a usable edit list these are the
    /// raw PTS values divided by the timescale.
    pub fn presentation_times(&self) -> Vec<f64> {
        if self.timescale == 0 {
            return Vec::new();
        }
        let mut times: Vec<f64> = match self.presented_ticks() {
            Some(times) => times
                .iter()
                .map(|time| time.to_seconds(self.timescale))
                .collect(),
            None => self
                .samples
                .iter()
                .map(|s| s.pts as f64 / f64::from(self.timescale))
                .collect(),
        };
        times.sort_by(f64::total_cmp);
        times
    }

    /// Returns the nominal time between samples in seconds: the most common
    /// non-zero sample duration, or, when no sample carries a duration (TS),
    /// the median positive step between consecutive DTS in decode order.
    /// Decode order keeps a timestamp reset from interleaving two runs of
    /// times, which sorting the PTS would do.
    pub fn nominal_step(&self) -> Option<f64> {
        if self.timescale == 0 {
            return None;
        }
        let timescale = f64::from(self.timescale);

        let mut durations: Vec<u32> = self
            .samples
            .iter()
            .map(|s| s.duration)
            .filter(|&d| d > 0)
            .collect();
        if !durations.is_empty() {
            durations.sort_unstable();
            let mut best = (durations[0], 0usize);
            let mut run = (durations[0], 0usize);
            for &d in &durations {
                if d == run.0 {
                    run.1 += 1;
                } else {
                    run = (d, 1);
                }
                if run.1 > best.1 {
                    best = run;
                }
            }
            return Some(f64::from(best.0) / timescale);
        }

        let mut steps: Vec<i64> = self
            .samples
            .windows(2)
            .map(|w| w[1].dts.saturating_sub(w[0].dts))
            .filter(|&d| d > 0)
            .collect();
        if steps.is_empty() {
            return None;
        }
        let middle = steps.len() / 2;
        let (_, median, _) = steps.select_nth_unstable(middle);
        Some(*median as f64 / timescale)
    }

    /// Returns the span of the stored media in seconds: from the first DTS
    /// to the end of the last sample in decode order (its DTS plus duration).
    /// Returns 0.0 for an empty track or a zero timescale.
    pub fn media_duration(&self) -> f64 {
        if self.timescale == 0 {
            return 0.0;
        }
        match (self.samples.first(), self.samples.last()) {
            (Some(first), Some(last)) => {
                let end = last.dts.saturating_add(i64::from(last.duration));
                end.saturating_sub(first.dts) as f64 / f64::from(self.timescale)
            }
            _ => 0.0,
        }
    }

    /// Sum of the leading empty edits in seconds: the delay before anything
    /// of this track is shown.
    fn leading_empty_edit_seconds(&self) -> f64 {
        self.edits
            .iter()
            .take_while(|e| e.is_empty_edit())
            .filter_map(Edit::segment_seconds)
            .fold(0.0, |total, seconds| total + seconds)
    }

    /// Maps every sample shown by the edit list to its presentation time, as
    /// exact fractions. Returns None when there is no edit list or it cannot
    /// be applied (unknown movie timescale or a non-unit rate on a
    /// non-empty edit), so that callers fall back to raw PTS.
    fn presented_ticks(&self) -> Option<Vec<PresentedTime>> {
        if self.edits.is_empty() {
            return None;
        }
        let track_timescale = i128::from(self.timescale);
        let edit_count = self.edits.len();

        // Each edit's start and duration on the presentation timeline, as
        // fractions over (movie timescale × track timescale) so that edits
        // in the movie timescale and samples in the track timescale meet
        // without rounding.
        let mut timeline_start = PresentedTime::zero();
        let mut shown = Vec::new();
        for (position, edit) in self.edits.iter().enumerate() {
            let is_last = position + 1 == edit_count;
            let open_ended = edit.segment_duration == 0 && is_last;
            if edit.movie_timescale == 0 && !open_ended {
                return None;
            }
            let movie_timescale = i128::from(edit.movie_timescale.max(1));
            // Segment duration in track ticks, kept as a fraction over the
            // movie timescale.
            let segment_track_ticks_scaled = i128::from(edit.segment_duration) * track_timescale;

            if edit.is_empty_edit() {
                timeline_start = timeline_start
                    .plus_track_ticks_scaled(segment_track_ticks_scaled, movie_timescale);
                continue;
            }
            if edit.media_time < 0 {
                // A negative media time other than -1 has no meaning.
                return None;
            }
            // NOTE: dwell edits (rate 0) and rates other than 1 are not
            // mapped, so such a track is presented by its raw PTS instead.
            if (edit.media_rate - 1.0).abs() > f64::EPSILON {
                return None;
            }

            // A sample is shown when its span [pts, pts + duration) overlaps
            // the edit's media range. One that starts before the range (an
            // audio frame straddling the cut) is shown from the edit start.
            let media_start = i128::from(edit.media_time);
            for sample in &self.samples {
                let pts = i128::from(sample.pts);
                let end = pts + i128::from(sample.duration);
                let overlaps_start = if sample.duration == 0 {
                    pts >= media_start
                } else {
                    end > media_start
                };
                if !overlaps_start {
                    continue;
                }
                let offset_ticks = (pts - media_start).max(0);
                // offset_ticks < segment duration in track ticks, compared as
                // offset_ticks × movie_timescale < segment × track_timescale.
                if !open_ended && offset_ticks * movie_timescale >= segment_track_ticks_scaled {
                    continue;
                }
                shown.push(
                    timeline_start
                        .plus_track_ticks_scaled(offset_ticks * movie_timescale, movie_timescale),
                );
            }
            timeline_start =
                timeline_start.plus_track_ticks_scaled(segment_track_ticks_scaled, movie_timescale);
        }
        Some(shown)
    }
}

/// A point on the presentation timeline in track ticks, stored as a sum of
/// fractions over the movie timescales met so far (normally one).
#[derive(Debug, Clone, Copy)]
struct PresentedTime {
    /// Track ticks × `denominator`.
    numerator: i128,
    denominator: i128,
}

impl PresentedTime {
    fn zero() -> PresentedTime {
        PresentedTime {
            numerator: 0,
            denominator: 1,
        }
    }

    /// Adds `scaled_ticks / denominator` track ticks.
    fn plus_track_ticks_scaled(self, scaled_ticks: i128, denominator: i128) -> PresentedTime {
        if denominator == self.denominator {
            return PresentedTime {
                numerator: self.numerator.saturating_add(scaled_ticks),
                denominator,
            };
        }
        PresentedTime {
            numerator: self
                .numerator
                .saturating_mul(denominator)
                .saturating_add(scaled_ticks.saturating_mul(self.denominator)),
            denominator: self.denominator.saturating_mul(denominator),
        }
    }

    fn to_seconds(self, track_timescale: u32) -> f64 {
        self.numerator as f64 / self.denominator as f64 / f64::from(track_timescale)
    }
}

/// Reads the container index of `path`, sniffing whether it is MP4/QuickTime
/// or MPEG-TS, and reads only the index, not the media payload.
///
/// Damage inside a recognised container is reported in
/// [`ContainerIndex::problems`]. An error means no index could be produced.
pub fn read_index(path: &Path) -> Result<ContainerIndex, IndexError> {
    let io_error = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io_error)?;

    if looks_like_mp4(&head) {
        return mp4::read_mp4_index(path, file);
    }
    if let Some(layout) = ts::detect_packet_layout(&head, TS_SYNC_PACKETS_REQUIRED) {
        return ts::read_ts_index(path, file, layout);
    }
    Err(IndexError::UnknownFormat {
        path: path.to_path_buf(),
    })
}

/// Returns true when the first box header names a type that starts MP4 and
/// QuickTime files.
fn looks_like_mp4(head: &[u8]) -> bool {
    head.get(4..8)
        .is_some_and(|box_type| MP4_FIRST_BOX_TYPES.iter().any(|t| t.as_slice() == box_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn case(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cases")
            .join(name)
    }

    fn track_with(timescale: u32, samples: &[(i64, i64, u32)], edits: Vec<Edit>) -> TrackIndex {
        TrackIndex {
            index: 0,
            id: 1,
            kind: TrackKind::Video,
            handler_type: "vide".into(),
            handler_name: None,
            codec: "avc1".into(),
            timescale,
            width: None,
            height: None,
            rotation: 0,
            declared_duration: None,
            edits,
            samples: samples
                .iter()
                .map(|&(dts, pts, duration)| Sample {
                    dts,
                    pts,
                    duration,
                    size: 1,
                    offset: 0,
                    is_sync: true,
                })
                .collect(),
            declared_samples: samples.len() as u64,
            continuity_errors: 0,
        }
    }

    #[test]
    fn sniffer_dispatches_mp4_and_ts() {
        let mp4 = read_index(&case("base-10s.mp4")).unwrap();
        assert_eq!(mp4.format, ContainerFormat::Mp4);

        let ts = read_index(&case("ts-gap-10s.ts")).unwrap();
        assert_eq!(ts.format, ContainerFormat::MpegTs);
    }

    #[test]
    fn sniffer_rejects_unknown_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, b"plain text, not a container at all").unwrap();

        let error = read_index(&path).unwrap_err();
        assert!(matches!(error, IndexError::UnknownFormat { .. }), "{error}");
        assert!(error.to_string().contains("notes.txt"));
    }

    #[test]
    fn missing_file_is_io_error_naming_path() {
        let error = read_index(Path::new("/nonexistent/clip.mp4")).unwrap_err();
        assert!(matches!(error, IndexError::Io { .. }));
        assert!(error.to_string().contains("/nonexistent/clip.mp4"));
    }

    #[test]
    fn empty_edit_delays_presentation_start() {
        let edits = vec![
            Edit {
                segment_duration: 500,
                movie_timescale: 1000,
                media_time: -1,
                media_rate: 1.0,
            },
            Edit {
                segment_duration: 1000,
                movie_timescale: 1000,
                media_time: 0,
                media_rate: 1.0,
            },
        ];
        let track = track_with(30, &[(0, 0, 15), (15, 15, 15)], edits);

        assert!((track.presentation_start() - 0.5).abs() < 1e-9);
        assert_eq!(track.presentation_times(), vec![0.5, 1.0]);
    }

    #[test]
    fn media_time_hides_preroll_samples() {
        let edits = vec![Edit {
            segment_duration: 2000,
            movie_timescale: 1000,
            media_time: 20,
            media_rate: 1.0,
        }];
        let track = track_with(
            10,
            &[(0, 0, 10), (10, 10, 10), (20, 20, 10), (30, 30, 10)],
            edits,
        );

        assert_eq!(track.presentation_start(), 0.0);
        assert_eq!(track.presentation_times(), vec![0.0, 1.0]);
    }

    #[test]
    fn open_ended_last_edit_shows_rest_of_media() {
        let edits = vec![Edit {
            segment_duration: 0,
            movie_timescale: 0,
            media_time: 10,
            media_rate: 1.0,
        }];
        let track = track_with(10, &[(0, 10, 10), (10, 20, 10), (20, 30, 10)], edits);

        assert_eq!(track.presentation_times(), vec![0.0, 1.0, 2.0]);
    }

    #[test]
    fn nominal_step_prefers_most_common_duration() {
        let track = track_with(
            30,
            &[(0, 0, 1), (1, 1, 1), (2, 2, 2), (4, 4, 1)],
            Vec::new(),
        );
        assert_eq!(track.nominal_step(), Some(1.0 / 30.0));
    }

    #[test]
    fn nominal_step_without_durations_uses_median_dts_step() {
        let track = track_with(
            90_000,
            &[
                (0, 0, 0),
                (3000, 3000, 0),
                (6000, 6000, 0),
                (906_000, 906_000, 0),
            ],
            Vec::new(),
        );
        assert_eq!(track.nominal_step(), Some(3000.0 / 90_000.0));
    }

    #[test]
    fn zero_timescale_helpers_do_not_divide_by_zero() {
        let track = track_with(0, &[(0, 0, 1)], Vec::new());
        assert_eq!(track.presentation_start(), 0.0);
        assert!(track.presentation_times().is_empty());
        assert_eq!(track.nominal_step(), None);
        assert_eq!(track.media_duration(), 0.0);
    }

    /// Returns the first run of three Latin words, or an English function
    /// word, found in `text`: a sign that an English sentence slipped into
    /// the Chinese form. Box names, PIDs and numbers stand alone and pass.
    fn english_phrase(text: &str) -> Option<String> {
        const FUNCTION_WORDS: [&str; 10] = [
            "the", "of", "is", "are", "and", "was", "has", "but", "not", "its",
        ];
        let words: Vec<&str> = text
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .collect();
        if let Some(word) = words.iter().find(|w| FUNCTION_WORDS.contains(w)) {
            return Some((*word).to_string());
        }
        let runs: Vec<&str> = text.split(|c: char| !c.is_ascii()).collect();
        runs.iter()
            .find(|run| {
                run.split_whitespace()
                    .filter(|word| word.chars().all(|c| c.is_ascii_alphabetic()))
                    .count()
                    >= 3
            })
            .map(|run| run.trim().to_string())
    }

    fn has_cjk(text: &str) -> bool {
        text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    }

    /// Reads every fixture, and copies of each cut at a third and two
    /// thirds of its length, and returns every problem found.
    fn problems_of_damaged_fixtures() -> Vec<IndexProblem> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let dir = tempfile::tempdir().unwrap();
        let mut problems = Vec::new();
        for folder in ["cases", "samples/misc", "samples/dashcam-fuzz"] {
            for entry in std::fs::read_dir(root.join(folder)).unwrap() {
                let path = entry.unwrap().path();
                if !path.is_file() {
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                let name = path.file_name().unwrap();
                let cut = dir.path().join(name);
                let mut copies = vec![path.clone()];
                for (part, divisor) in [(1, 3), (2, 3)] {
                    let copy = cut.with_extension(format!(
                        "cut{part}.{}",
                        path.extension().unwrap().to_string_lossy()
                    ));
                    std::fs::write(&copy, &bytes[..bytes.len() * part / divisor]).unwrap();
                    copies.push(copy);
                }
                for copy in copies {
                    if let Ok(index) = read_index(&copy) {
                        problems.extend(index.problems);
                    }
                }
            }
        }
        problems
    }

    #[test]
    fn damaged_fixture_reasons_read_in_both_languages() {
        let problems = problems_of_damaged_fixtures();
        let reasons: Vec<&Text> = problems
            .iter()
            .filter_map(|problem| match problem {
                IndexProblem::NotFinalized { reason } | IndexProblem::Malformed { reason } => {
                    Some(reason)
                }
                IndexProblem::Truncated { .. } => None,
            })
            .collect();
        let not_finalized = problems
            .iter()
            .filter(|p| matches!(p, IndexProblem::NotFinalized { .. }))
            .count();
        assert!(not_finalized > 0, "no fixture was found not finalized");
        assert!(
            reasons.len() > not_finalized,
            "no malformed fixture was found"
        );

        for reason in reasons {
            assert!(has_cjk(&reason.zh), "no Chinese in {:?}", reason.zh);
            assert!(!reason.en.is_empty(), "no English for {:?}", reason.zh);
            assert!(!has_cjk(&reason.en), "Chinese in {:?}", reason.en);
            assert_eq!(
                english_phrase(&reason.zh),
                None,
                "English inside {:?}",
                reason.zh
            );
        }
    }

    #[test]
    fn english_phrase_finds_sentences_not_box_names() {
        assert_eq!(english_phrase("moov 中没有 mvhd box"), None);
        assert_eq!(english_phrase("PID 0x0100 承载了 12 个 PES 数据包"), None);
        assert_eq!(
            english_phrase("文件索引损坏：the stsz box of track 1 is too short"),
            Some("the".to_string())
        );
        assert_eq!(
            english_phrase("索引异常：stsz declares samples"),
            Some("stsz declares samples".to_string())
        );
    }

    #[test]
    fn unknown_format_error_reads_in_chinese() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, b"plain text, not a container at all").unwrap();

        let text = read_index(&path).unwrap_err().text();
        assert!(
            text.zh.contains("既不是 MP4/QuickTime 也不是 MPEG-TS"),
            "{}",
            text.zh
        );
        assert!(text.zh.contains("notes.txt"), "{}", text.zh);
        assert_eq!(english_phrase(&text.zh), None, "{}", text.zh);
        assert!(
            text.en.contains("is neither MP4/QuickTime nor MPEG-TS"),
            "{}",
            text.en
        );
    }

    #[test]
    fn missing_file_error_reads_in_chinese() {
        let text = read_index(Path::new("/nonexistent/clip.mp4"))
            .unwrap_err()
            .text();
        assert_eq!(text.zh, "读取 /nonexistent/clip.mp4 失败：文件不存在");
        assert!(
            text.en
                .starts_with("failed to read /nonexistent/clip.mp4: "),
            "{}",
            text.en
        );
    }

    #[test]
    fn container_index_serialises_lowercase_format() {
        let index = read_index(&case("ts-reset.ts")).unwrap();
        let json = serde_json::to_value(&index).unwrap();
        assert_eq!(json["format"], "mpegts");
        assert!(json["tracks"][0]["samples"].is_array());
    }
}
