//! Raw frames and audio buffers as the renderer edits them: I420 planes
//! split out of a GStreamer buffer, even-size padding, and audio ranges
//! muted or replaced by a tone.

use gstreamer as gst;
use gstreamer_video as gst_video;

use super::mask::{self, Placed, PlaneMut};
use super::spec::{AudioAction, AudioRange, DEFAULT_TONE_HZ};

/// Luma and chroma of the black added when a picture is padded to even
/// size (limited-range BT.601 black).
const PAD_LUMA: u8 = 16;
const PAD_CHROMA: u8 = 128;

/// Peak amplitude of a replacement tone: −12 dBFS, clearly audible without
/// clipping after AAC encoding.
const TONE_AMPLITUDE: f32 = 0.25;

/// Offsets and strides of the three planes of an I420 buffer, taken from
/// its video meta when the decoder's pool laid it out differently.
fn layout(buffer: &gst::BufferRef, info: &gst_video::VideoInfo) -> ([usize; 3], [usize; 3]) {
    if let Some(meta) = buffer.meta::<gst_video::VideoMeta>() {
        let offset = meta.offset();
        let stride = meta.stride();
        return (
            [offset[0], offset[1], offset[2]],
            [stride[0] as usize, stride[1] as usize, stride[2] as usize],
        );
    }
    let offset = info.offset();
    let stride = info.stride();
    (
        [offset[0], offset[1], offset[2]],
        [stride[0] as usize, stride[1] as usize, stride[2] as usize],
    )
}

/// Runs `edit` on the three planes of an I420 buffer. Returns false when
/// the planes are not laid out in order (no known decoder does that).
pub fn with_planes(
    buffer: &mut gst::BufferRef,
    info: &gst_video::VideoInfo,
    edit: impl FnOnce(&mut [PlaneMut<'_>; 3]),
) -> bool {
    let (offsets, strides) = layout(buffer, info);
    if !(offsets[0] < offsets[1] && offsets[1] < offsets[2]) {
        return false;
    }
    let (width, height) = (info.width() as usize, info.height() as usize);
    let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
    let Ok(mut map) = buffer.map_writable() else {
        return false;
    };
    let data = map.as_mut_slice();
    if data.len() < offsets[2] + strides[2] * chroma_height {
        return false;
    }
    let (head, v) = data.split_at_mut(offsets[2]);
    let (head, u) = head.split_at_mut(offsets[1]);
    let y = &mut head[offsets[0]..];
    let mut planes = [
        PlaneMut {
            data: y,
            stride: strides[0],
            width,
            height,
        },
        PlaneMut {
            data: u,
            stride: strides[1],
            width: chroma_width,
            height: chroma_height,
        },
        PlaneMut {
            data: v,
            stride: strides[2],
            width: chroma_width,
            height: chroma_height,
        },
    ];
    edit(&mut planes);
    true
}

/// Applies masks to one frame in place.
pub fn mask_frame(
    buffer: &mut gst::BufferRef,
    info: &gst_video::VideoInfo,
    placed: &[Placed],
) -> bool {
    if placed.is_empty() {
        return true;
    }
    with_planes(buffer, info, |planes| mask::apply(planes, placed))
}

/// Copies an I420 frame into a larger one, filling the added columns and
/// rows with black. Encoders reject odd sizes in 4:2:0, so odd pictures
/// are padded on the right and bottom.
pub fn pad_frame(
    source: &mut gst::BufferRef,
    source_info: &gst_video::VideoInfo,
    padded_info: &gst_video::VideoInfo,
) -> Option<gst::Buffer> {
    let mut padded = gst::Buffer::with_size(padded_info.size()).ok()?;
    {
        let target = padded.get_mut()?;
        target.set_pts(source.pts());
        target.set_dts(source.dts());
        target.set_duration(source.duration());
        target.set_flags(source.flags());
    }
    let mut rows: [Vec<Vec<u8>>; 3] = Default::default();
    let copied = with_planes(source, source_info, |planes| {
        for (index, plane) in planes.iter().enumerate() {
            rows[index] = (0..plane.height)
                .map(|y| plane.data[y * plane.stride..y * plane.stride + plane.width].to_vec())
                .collect();
        }
    });
    if !copied {
        return None;
    }
    let target = padded.get_mut()?;
    let filled = with_planes(target, padded_info, |planes| {
        for (index, plane) in planes.iter_mut().enumerate() {
            let fill = if index == 0 { PAD_LUMA } else { PAD_CHROMA };
            for y in 0..plane.height {
                let row = &mut plane.data[y * plane.stride..y * plane.stride + plane.width];
                row.fill(fill);
                if let Some(source_row) = rows[index].get(y) {
                    row[..source_row.len()].copy_from_slice(source_row);
                }
            }
        }
    });
    filled.then_some(padded)
}

/// Mutes or replaces the parts of one interleaved F32 audio buffer that
/// fall in the given ranges. `start` is the buffer's time in seconds.
/// Returns the number of samples per channel changed.
pub fn edit_audio(
    data: &mut [f32],
    channels: usize,
    rate: u32,
    start: f64,
    ranges: &[AudioRange],
) -> u64 {
    if channels == 0 || rate == 0 {
        return 0;
    }
    let frames = data.len() / channels;
    let end = start + frames as f64 / f64::from(rate);
    let mut changed = 0;
    for range in ranges.iter().filter(|r| r.from < end && start < r.to) {
        let first = (((range.from - start) * f64::from(rate)).ceil().max(0.0)) as usize;
        let last = (((range.to - start) * f64::from(rate)).ceil().max(0.0) as usize).min(frames);
        for frame in first..last {
            let value = match range.action {
                AudioAction::Mute => 0.0,
                AudioAction::Tone => {
                    let t = start + frame as f64 / f64::from(rate);
                    let hz = range.tone_hz.unwrap_or(DEFAULT_TONE_HZ);
                    TONE_AMPLITUDE * (2.0 * std::f64::consts::PI * hz * t).sin() as f32
                }
            };
            data[frame * channels..(frame + 1) * channels].fill(value);
        }
        changed += last.saturating_sub(first) as u64;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::spec::Reason;

    #[test]
    fn odd_picture_is_padded_with_black() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 5, 3)
            .build()
            .unwrap();
        let padded_info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 6, 4)
            .build()
            .unwrap();
        let mut source = gst::Buffer::from_mut_slice(vec![200u8; info.size()]);
        let padded = pad_frame(source.make_mut(), &info, &padded_info).unwrap();
        let map = padded.map_readable().unwrap();
        let stride = padded_info.stride()[0] as usize;
        assert_eq!(map[0], 200, "the picture is kept");
        assert_eq!(map[4], 200);
        assert_eq!(map[5], PAD_LUMA, "the added column is black");
        assert_eq!(map[3 * stride], PAD_LUMA, "the added row is black");
        assert_eq!(map[2 * stride + 4], 200);
    }

    #[test]
    fn muted_range_is_zero_and_the_rest_untouched() {
        let rate = 1000;
        let mut data = vec![0.5f32; 2 * rate as usize];
        let range = AudioRange {
            id: None,
            from: 1.25,
            to: 1.5,
            action: AudioAction::Mute,
            tone_hz: None,
            reason: Reason::PersonalPrivacy,
            basis: None,
            author: "a".into(),
        };
        // Two channels, buffer starting at 1.0 s, lasting 1 s.
        let changed = edit_audio(&mut data, 2, rate, 1.0, &[range]);
        assert_eq!(changed, 250);
        assert_eq!(data[2 * 249], 0.5);
        assert_eq!(data[2 * 250], 0.0);
        assert_eq!(data[2 * 499 + 1], 0.0);
        assert_eq!(data[2 * 500], 0.5);
    }
}
