//! The lossless cutter: turns a clip plan into an MP4 of the camera's own
//! encoded samples.
//!
//! Each track of each planned stretch keeps the samples from the last sync
//! sample at or before the stretch's start (a decoder needs the whole GOP)
//! to the last sample in decode order that is shown before its end. The
//! edit list then presents exactly the requested range: an edit's
//! `media_time` hides the preroll before the boundary, its duration hides
//! the reference frames kept past the end, and an empty edit stands for a
//! recording gap. The source's own edit list is honoured, so a camera's
//! audio priming or delayed start stays as the camera wrote it.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use super::plan::{ClipPlan, Recording};
use super::SplitError;
use crate::media::index::{ContainerFormat, TrackIndex, TrackKind};
use crate::media::mp4_writer::{
    read_source_movie, EditEntry, Movie, SampleRef, SourceMovie, Track, TrackBoxes,
};

/// Movie timescale when the clip has no video track to borrow one from:
/// milliseconds, as most muxers write.
const DEFAULT_MOVIE_TIMESCALE: u32 = 1000;

/// One piece of a source track's presentation, from its edit list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Piece {
    /// Presentation seconds where the piece starts and ends; the end is
    /// infinite for an open last edit or a track without an edit list.
    pub start: f64,
    pub end: f64,
    /// First media time shown (track ticks), or None for an empty edit.
    pub media_time: Option<i64>,
}

/// A track of the clip and where it came from.
#[derive(Clone, Debug, Serialize)]
pub struct TrackNote {
    pub track_id: u32,
    pub kind: String,
    pub codec: String,
    /// Why the track is not in the clip; absent for kept tracks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::i18n::Text>,
}

/// What the cutter did with one planned stretch.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SegmentCut {
    /// Seconds of video stored before the stretch's start and hidden by
    /// the edit list (the rest of the GOP that the first frame needs).
    pub preroll: f64,
    /// Presentation second of the recording from which samples are stored.
    pub stored_from: f64,
    /// Byte range of the recording that the copied samples come from.
    pub bytes_from: u64,
    pub bytes_to: u64,
    /// Samples copied from the recording, all tracks together.
    pub samples: u64,
}

/// The movie to write and what it holds.
pub struct Cut {
    pub movie: Movie,
    pub segments: Vec<SegmentCut>,
    pub kept: Vec<TrackNote>,
    pub dropped: Vec<TrackNote>,
}

/// Builds the pieces of a track's presentation from its edit list. Without
/// an edit list the media is shown at its own composition times.
pub(crate) fn pieces(track: &TrackIndex) -> Vec<Piece> {
    if track.edits.is_empty() {
        return vec![Piece {
            start: 0.0,
            end: f64::INFINITY,
            media_time: Some(0),
        }];
    }
    let mut pieces = Vec::new();
    let mut position = 0.0;
    let count = track.edits.len();
    for (i, edit) in track.edits.iter().enumerate() {
        let length = match edit.segment_seconds() {
            Some(seconds) if edit.segment_duration > 0 => seconds,
            _ if i + 1 == count => f64::INFINITY,
            _ => 0.0,
        };
        // NOTE: an edit at a rate other than 1 (a dwell or slow motion) is
        // presented as if it were empty, so such footage is left out.
        let is_normal_rate = (edit.media_rate - 1.0).abs() < 1e-9;
        pieces.push(Piece {
            start: position,
            end: position + length,
            media_time: (!edit.is_empty_edit() && is_normal_rate).then_some(edit.media_time),
        });
        position += length;
    }
    pieces
}

/// Returns the presentation second at which a track's last sample ends.
pub fn presented_end(track: &TrackIndex) -> f64 {
    if track.timescale == 0 || track.samples.is_empty() {
        return 0.0;
    }
    let timescale = f64::from(track.timescale);
    let media_end = track
        .samples
        .iter()
        .map(|s| s.pts + i64::from(s.duration))
        .max()
        .unwrap_or(0);
    let media_start = track.samples.iter().map(|s| s.pts).min().unwrap_or(0);
    pieces(track)
        .iter()
        .filter_map(|piece| {
            let media_time = piece.media_time?;
            if media_end <= media_time {
                return None;
            }
            let shown_from = piece.start + ((media_start - media_time).max(0) as f64) / timescale;
            let shown_to = piece
                .end
                .min(piece.start + (media_end - media_time) as f64 / timescale);
            (shown_to > shown_from).then_some(shown_to)
        })
        .fold(0.0, f64::max)
}

/// A track of the clip while it is being built.
pub(crate) struct OutTrack {
    track_id: u32,
    timescale: u32,
    pub(crate) kind: TrackKind,
    handler_type: String,
    /// Position among the first recording's tracks of the same handler, used
    /// to find the same track in the next chapters.
    ordinal: usize,
    pub(crate) boxes: TrackBoxes,
    samples: Vec<SampleRef>,
    edits: Vec<EditEntry>,
    /// End of the last edit, in movie ticks.
    edit_end: u64,
    /// Decode time at which the next sample goes, in track ticks.
    next_dts: i64,
    /// End of the latest presentation among the copied samples, in track
    /// ticks: the next stretch's media must start at or after it.
    presented_end: i64,
}

/// Samples of a source track in decode order with the end of each one's
/// presentation, so that the samples shown in a range can be found.
struct Presentation<'a> {
    track: &'a TrackIndex,
    shown_until: Vec<i64>,
}

impl<'a> Presentation<'a> {
    fn new(track: &'a TrackIndex) -> Presentation<'a> {
        let samples = &track.samples;
        let mut by_pts: Vec<usize> = (0..samples.len()).collect();
        by_pts.sort_by_key(|&i| (samples[i].pts, i));
        let mut shown_until = vec![0i64; samples.len()];
        for (rank, &i) in by_pts.iter().enumerate() {
            shown_until[i] = match by_pts.get(rank + 1) {
                Some(&next) if samples[next].pts > samples[i].pts => samples[next].pts,
                _ => samples[i].pts + i64::from(samples[i].duration.max(1)),
            };
        }
        Presentation { track, shown_until }
    }

    /// Returns the decode range `[first, last]` to copy for showing media
    /// times `[from, to)`, plus the earliest and latest shown media times
    /// within it, or None when no sample is shown in the range.
    fn select(&self, from: i64, to: i64) -> Option<Selection> {
        let samples = &self.track.samples;
        let mut first_needed = usize::MAX;
        let mut last_needed = 0usize;
        let mut shown_from = i64::MAX;
        let mut shown_to = i64::MIN;
        for (i, sample) in samples.iter().enumerate() {
            if sample.pts < to && self.shown_until[i] > from {
                first_needed = first_needed.min(i);
                last_needed = last_needed.max(i);
                shown_from = shown_from.min(sample.pts);
                shown_to = shown_to.max(self.shown_until[i]);
            }
        }
        if first_needed == usize::MAX {
            return None;
        }
        let first = (0..=first_needed)
            .rev()
            .find(|&i| samples[i].is_sync)
            .unwrap_or(0);
        let stored_from = samples[first..=last_needed]
            .iter()
            .map(|s| s.pts)
            .min()
            .unwrap_or(shown_from);
        Some(Selection {
            first,
            last: last_needed,
            shown_from: shown_from.max(from),
            shown_to: shown_to.min(to),
            stored_from,
        })
    }
}

struct Selection {
    first: usize,
    last: usize,
    shown_from: i64,
    shown_to: i64,
    stored_from: i64,
}

fn kind_name(kind: TrackKind) -> String {
    format!("{kind:?}").to_lowercase()
}

/// Reads the boxes of every recording a plan uses, checking that each is
/// an MP4 whose samples can be copied.
pub(crate) fn read_sources(
    plan: &ClipPlan,
    recordings: &[Recording],
) -> Result<HashMap<usize, SourceMovie>, SplitError> {
    let mut movies = HashMap::new();
    for segment in &plan.segments {
        let recording = &recordings[segment.recording];
        if movies.contains_key(&segment.recording) {
            continue;
        }
        if recording.index.format != ContainerFormat::Mp4 {
            return Err(SplitError::UnsupportedContainer {
                file_name: recording.file_name.clone(),
            });
        }
        let movie = read_source_movie(&recording.path).map_err(|e| SplitError::Source {
            file_name: recording.file_name.clone(),
            reason: e.to_string(),
        })?;
        movies.insert(segment.recording, movie);
    }
    Ok(movies)
}

/// Cuts a planned clip losslessly from the recordings it names.
pub fn cut_lossless(plan: &ClipPlan, recordings: &[Recording]) -> Result<Cut, SplitError> {
    let movies = read_sources(plan, recordings)?;
    let first = plan.segments[0].recording;
    let mut builder = Builder::new(&recordings[first], &movies[&first]);
    for segment in &plan.segments {
        let recording = &recordings[segment.recording];
        let movie = &movies[&segment.recording];
        builder.start_segment(segment);
        for out in 0..builder.tracks.len() {
            if let Some((track, boxes)) = builder.matching_track(out, recording, movie) {
                let entry = boxes.sample_entries[0].clone();
                builder.append(
                    out,
                    track,
                    &recording.path,
                    &entry,
                    segment.from,
                    segment.to,
                    segment.clip_from,
                );
            }
        }
    }
    Ok(builder.finish(plan.segments[0].wall_from.timestamp()))
}

/// Assembles the clip's tracks stretch by stretch.
pub(crate) struct Builder {
    pub(crate) tracks: Vec<OutTrack>,
    notes: Vec<TrackNote>,
    dropped: Vec<TrackNote>,
    sources: Vec<PathBuf>,
    segments: Vec<SegmentCut>,
    movie_timescale: u32,
    ftyp: Option<Vec<u8>>,
    user_data: Option<Vec<u8>>,
}

impl Builder {
    /// Starts a clip whose tracks are those of the first recording.
    pub(crate) fn new(first: &Recording, movie: &SourceMovie) -> Builder {
        let (tracks, notes, dropped) = template_tracks(first, movie);
        let movie_timescale = tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .map_or(DEFAULT_MOVIE_TIMESCALE, |t| t.timescale);
        Builder {
            tracks,
            notes,
            dropped,
            sources: Vec::new(),
            segments: Vec::new(),
            movie_timescale,
            ftyp: movie.ftyp.clone(),
            user_data: movie.user_data.clone(),
        }
    }

    /// Opens the report of the next planned stretch.
    pub(crate) fn start_segment(&mut self, segment: &super::plan::Segment) {
        self.segments.push(SegmentCut {
            bytes_from: u64::MAX,
            stored_from: segment.from,
            ..SegmentCut::default()
        });
    }

    pub(crate) fn segment_report(&mut self) -> &mut SegmentCut {
        self.segments.last_mut().expect("a segment was started")
    }

    /// Finds the track of a recording that continues clip track `out`: the
    /// same handler at the same position among that handler's tracks, with
    /// the same timescale.
    pub(crate) fn matching_track<'a>(
        &self,
        out: usize,
        recording: &'a Recording,
        movie: &'a SourceMovie,
    ) -> Option<(&'a TrackIndex, &'a TrackBoxes)> {
        let out = &self.tracks[out];
        let (position, track) = recording
            .index
            .tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.handler_type == out.handler_type)
            .nth(out.ordinal)?;
        if track.timescale != out.timescale {
            tracing::warn!(file = %recording.file_name, track = track.id, "track timescale differs from the first chapter's; its samples are left out of the clip");
            return None;
        }
        match movie.tracks.get(position) {
            Some(Ok((id, boxes))) if *id == track.id => Some((track, boxes)),
            _ => None,
        }
    }

    /// Appends to clip track `out` the samples of `track` (in the file at
    /// `path`, described by the sample entry `entry`) that present its
    /// seconds `[from, to)`, placed at `clip_from` on the clip's timeline.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        out: usize,
        track: &TrackIndex,
        path: &std::path::Path,
        entry: &[u8],
        from: f64,
        to: f64,
        clip_from: f64,
    ) {
        let source = match self.sources.iter().position(|p| p == path) {
            Some(i) => i,
            None => {
                self.sources.push(path.to_path_buf());
                self.sources.len() - 1
            }
        };
        let movie_timescale = self.movie_timescale;
        let report = self.segments.last_mut().expect("a segment was started");
        let out = &mut self.tracks[out];
        let rescaled;
        let track = if track.timescale == out.timescale {
            track
        } else {
            rescaled = rescale_track(track, out.timescale);
            &rescaled
        };
        let description_index = match out.boxes.sample_entries.iter().position(|e| e == entry) {
            Some(i) => i as u32 + 1,
            None => {
                out.boxes.sample_entries.push(entry.to_vec());
                out.boxes.sample_entries.len() as u32
            }
        };
        append_track_stretch(
            out,
            track,
            from,
            to,
            clip_from,
            source,
            description_index,
            movie_timescale,
            report,
        );
    }

    /// Replaces the sample entries of clip track `out`, for a video track
    /// whose samples all come from a re-encode.
    pub(crate) fn set_sample_entries(&mut self, out: usize, entries: Vec<Vec<u8>>) {
        self.tracks[out].boxes.sample_entries = entries;
    }

    /// Finishes the movie; tracks left without samples are reported dropped.
    pub(crate) fn finish(self, creation_time: i64) -> Cut {
        let mut kept = Vec::new();
        let mut dropped = self.dropped;
        let mut movie_tracks = Vec::new();
        for (out, note) in self.tracks.into_iter().zip(self.notes) {
            if out.samples.is_empty() {
                dropped.push(TrackNote {
                    reason: Some(crate::i18n::Text::new(
                        "该轨道在检查单位时间范围内没有数据",
                        "the track holds no samples within the unit's range",
                    )),
                    ..note
                });
                continue;
            }
            kept.push(note);
            movie_tracks.push(Track {
                track_id: out.track_id,
                timescale: out.timescale,
                boxes: out.boxes,
                edits: out.edits,
                samples: out.samples,
            });
        }
        let segments = self
            .segments
            .into_iter()
            .map(|mut s| {
                if s.bytes_from == u64::MAX {
                    s.bytes_from = 0;
                }
                s
            })
            .collect();
        Cut {
            movie: Movie {
                ftyp: self.ftyp,
                timescale: self.movie_timescale,
                creation_time,
                user_data: self.user_data,
                sources: self.sources,
                tracks: movie_tracks,
            },
            segments,
            kept,
            dropped,
        }
    }
}

fn rescale_ticks(ticks: i64, from: u32, to: u32) -> i64 {
    ((i128::from(ticks) * i128::from(to) + i128::from(from) / 2) / i128::from(from.max(1))) as i64
}

/// Converts a track's times to another timescale, for samples that come
/// from a file whose track counts time differently (a re-encoded part).
/// Durations are taken between converted decode times, so no rounding
/// error accumulates.
fn rescale_track(track: &TrackIndex, timescale: u32) -> TrackIndex {
    let convert = |ticks: i64| -> i64 {
        let scaled = i128::from(ticks) * i128::from(timescale);
        let from = i128::from(track.timescale.max(1));
        (if scaled >= 0 {
            (scaled + from / 2) / from
        } else {
            (scaled - from / 2) / from
        }) as i64
    };
    let mut out = track.clone();
    out.timescale = timescale;
    let count = track.samples.len();
    for i in 0..count {
        let sample = track.samples[i];
        let dts = convert(sample.dts);
        let end = match track.samples.get(i + 1) {
            Some(next) => convert(next.dts),
            None => convert(sample.dts + i64::from(sample.duration)),
        };
        out.samples[i].dts = dts;
        out.samples[i].pts = convert(sample.pts);
        out.samples[i].duration = u32::try_from((end - dts).max(0)).unwrap_or(u32::MAX);
    }
    for edit in &mut out.edits {
        if edit.media_time >= 0 {
            edit.media_time = convert(edit.media_time);
        }
    }
    out
}

/// Makes the clip's tracks from the first recording's; returns them with
/// their notes, and the tracks that cannot be carried with the reason.
fn template_tracks(
    recording: &Recording,
    movie: &SourceMovie,
) -> (Vec<OutTrack>, Vec<TrackNote>, Vec<TrackNote>) {
    let mut tracks = Vec::new();
    let mut notes = Vec::new();
    let mut dropped = Vec::new();
    let mut seen_handlers: HashMap<String, usize> = HashMap::new();
    for (i, track) in recording.index.tracks.iter().enumerate() {
        let ordinal = *seen_handlers
            .entry(track.handler_type.clone())
            .and_modify(|n| *n += 1)
            .or_insert(0);
        let note = TrackNote {
            track_id: track.id,
            kind: kind_name(track.kind),
            codec: track.codec.clone(),
            reason: None,
        };
        let boxes = match movie.tracks.get(i) {
            Some(Ok((id, boxes))) if *id == track.id => boxes.clone(),
            Some(Err(reason)) => {
                dropped.push(TrackNote {
                    reason: Some(crate::i18n::Text::new(
                        format!("无法复制该轨道的描述：{reason}"),
                        format!("the track's description cannot be copied: {reason}"),
                    )),
                    ..note
                });
                continue;
            }
            _ => {
                dropped.push(TrackNote {
                    reason: Some(crate::i18n::Text::new(
                        "该轨道的索引与描述不一致",
                        "the track's index and description do not match",
                    )),
                    ..note
                });
                continue;
            }
        };
        let is_untimed = track.samples.len() > 1
            && track
                .samples
                .iter()
                .all(|s| s.duration == 0 && s.pts == track.samples[0].pts);
        if is_untimed {
            dropped.push(TrackNote {
                reason: Some(crate::i18n::Text::new(
                    "该轨道的样本没有时间信息（全部位于同一时刻），无法按检查单位的时间范围截取",
                    "the track's samples carry no timing (all at one instant), so no part of it can be cut to the unit's range",
                )),
                ..note
            });
            continue;
        }
        if track.timescale == 0 {
            dropped.push(TrackNote {
                reason: Some(crate::i18n::Text::new(
                    "该轨道的时间刻度为零，无法定位",
                    "the track's timescale is zero, so its samples cannot be placed in time",
                )),
                ..note
            });
            continue;
        }
        let mut boxes = boxes;
        boxes.sample_entries.truncate(1);
        tracks.push(OutTrack {
            track_id: track.id,
            timescale: track.timescale,
            kind: track.kind,
            handler_type: track.handler_type.clone(),
            ordinal,
            boxes,
            samples: Vec::new(),
            edits: Vec::new(),
            edit_end: 0,
            next_dts: 0,
            presented_end: 0,
        });
        notes.push(note);
    }
    (tracks, notes, dropped)
}

/// Appends the samples and edits that present `[segment_from, segment_to)`
/// of one source track at `segment_clip_from` on the clip's timeline.
#[allow(clippy::too_many_arguments)]
fn append_track_stretch(
    out: &mut OutTrack,
    track: &TrackIndex,
    segment_from: f64,
    segment_to: f64,
    segment_clip_from: f64,
    source: usize,
    description_index: u32,
    movie_timescale: u32,
    report: &mut SegmentCut,
) {
    let timescale = f64::from(track.timescale);
    let presentation = Presentation::new(track);
    let to_movie_ticks =
        |seconds: f64| (seconds * f64::from(movie_timescale)).round().max(0.0) as u64;

    for piece in pieces(track) {
        let from = segment_from.max(piece.start);
        let to = segment_to.min(piece.end);
        let Some(media_time) = piece.media_time else {
            continue;
        };
        if to <= from {
            continue;
        }
        let media_from = media_time + ((from - piece.start) * timescale).round() as i64;
        let media_to = media_time + ((to - piece.start) * timescale).round() as i64;
        let Some(selection) = presentation.select(media_from, media_to) else {
            continue;
        };

        let clip_at = segment_clip_from + (from - segment_from);
        let clip_from = clip_at + (selection.shown_from - media_from) as f64 / timescale;
        let clip_to = clip_at + (selection.shown_to - media_from) as f64 / timescale;
        let copied = &track.samples[selection.first..=selection.last];
        let mut start_tick = to_movie_ticks(clip_from).max(out.edit_end);
        let mut end_tick = to_movie_ticks(clip_to);
        // A hole shorter than one sample is the rounding of chapter starts
        // to whole seconds, not a gap: the stretch moves up by that much
        // rather than leaving a sliver of nothing.
        let sample_ticks = rescale_ticks(
            i64::from(copied[0].duration),
            track.timescale,
            movie_timescale,
        )
        .max(1) as u64;
        let hole = start_tick - out.edit_end;
        if hole > 0 && hole < sample_ticks && !out.edits.is_empty() {
            start_tick -= hole;
            end_tick = end_tick.saturating_sub(hole);
        }
        if end_tick <= start_tick {
            continue;
        }
        let hole = start_tick - out.edit_end;

        // The stretch's media goes after everything the previous one
        // presents, or an edit could show a frame of the wrong stretch.
        let lead = copied.iter().map(|s| s.pts).min().unwrap_or(copied[0].dts) - copied[0].dts;
        let shown_lead = selection.shown_from - copied[0].dts;
        let earliest_dts = out.next_dts.max(out.presented_end - lead);

        // A recording gap becomes a hole in the media timeline of one
        // continuing edit: the samples after it are timestamped that much
        // later, as the camera's own chapters are. An empty edit in the
        // middle of an edit list would say the same, but GStreamer 1.22 and
        // FFmpeg 5.1 stop or misplace playback at one.
        let continued = match out.edits.last() {
            Some(&EditEntry::Media {
                duration,
                media_time: last_media,
            }) => {
                let target = last_media
                    + rescale_ticks((duration + hole) as i64, movie_timescale, track.timescale);
                let start_dts = target - shown_lead;
                (start_dts >= earliest_dts).then_some(start_dts)
            }
            _ => None,
        };
        let start_dts = match continued {
            Some(start_dts) => start_dts,
            None => {
                if hole > 0 {
                    out.edits.push(EditEntry::Empty { duration: hole });
                }
                earliest_dts
            }
        };
        if start_dts > out.next_dts {
            if let Some(last) = out.samples.last_mut() {
                last.duration += u32::try_from(start_dts - out.next_dts).unwrap_or(0);
            }
        }
        let rebase = start_dts - copied[0].dts;
        match (continued, out.edits.last_mut()) {
            (Some(_), Some(EditEntry::Media { duration, .. })) => {
                *duration += hole + (end_tick - start_tick)
            }
            _ => out.edits.push(EditEntry::Media {
                duration: end_tick - start_tick,
                media_time: selection.shown_from + rebase,
            }),
        }
        out.edit_end = end_tick;

        let mut latest_end = start_dts;
        for sample in copied {
            out.samples.push(SampleRef {
                source,
                offset: sample.offset,
                size: sample.size,
                duration: sample.duration,
                composition_offset: (sample.pts - sample.dts) as i32,
                is_sync: sample.is_sync,
                description_index,
            });
            latest_end = latest_end.max(sample.pts + rebase + i64::from(sample.duration));
            report.bytes_from = report.bytes_from.min(sample.offset);
            report.bytes_to = report.bytes_to.max(sample.offset + u64::from(sample.size));
        }
        out.next_dts = start_dts + copied.iter().map(|s| i64::from(s.duration)).sum::<i64>();
        out.presented_end = latest_end;

        report.samples += copied.len() as u64;
        if out.kind == TrackKind::Video {
            let hidden = (selection.shown_from - selection.stored_from) as f64 / timescale;
            report.preroll = report.preroll.max(hidden);
            let stored = piece.start + (selection.stored_from - media_time) as f64 / timescale;
            report.stored_from = report.stored_from.min(stored.max(0.0));
        }
    }
}
