//! Mask geometry over time and the pixel work that hides a region.
//!
//! A mask's box is interpolated linearly between its keyframes and padded;
//! the shape (rectangle or ellipse inscribed in the box) decides which
//! pixels belong to it. Frames are planar YUV 4:2:0 (I420), the format the
//! decoder gives and the H.264 encoder takes, so no colour conversion is
//! paid per frame; each plane is masked at its own resolution.

use super::spec::{parse_color, Mask, Shape, Style, DEFAULT_BLUR_RADIUS, DEFAULT_CELL};

/// Box blur passes: three passes of a box filter approximate a Gaussian
/// closely enough that no block edges remain.
const BLUR_PASSES: usize = 3;

/// A mask's area in one frame, in pixels of the picture it is applied to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
    pub shape: Shape,
}

/// How a region's pixels are replaced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fill {
    /// A flat colour, as Y, U, V.
    Solid([u8; 3]),
    /// Square cells of this edge in luma pixels, each its own mean.
    Pixelate(u32),
    /// A box blur of this radius in luma pixels.
    Blur(u32),
}

/// One region with its fill, ready to apply to a frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placed {
    pub region: Region,
    pub fill: Fill,
}

impl Mask {
    /// Returns the padded box of the mask at `seconds`, or `None` when the
    /// mask is not active then.
    pub fn region_at(&self, seconds: f64) -> Option<Region> {
        if self.from.is_some_and(|from| seconds < from) || self.to.is_some_and(|to| seconds >= to) {
            return None;
        }
        let keys = &self.keyframes;
        let first = keys.first()?;
        let last = keys.last()?;
        let (x, y, width, height) = if seconds <= first.at {
            (first.x, first.y, first.width, first.height)
        } else if seconds >= last.at {
            (last.x, last.y, last.width, last.height)
        } else {
            let next = keys.iter().position(|k| k.at > seconds)?;
            let (a, b) = (&keys[next - 1], &keys[next]);
            let t = (seconds - a.at) / (b.at - a.at);
            let lerp = |p: f64, q: f64| p + (q - p) * t;
            (
                lerp(a.x, b.x),
                lerp(a.y, b.y),
                lerp(a.width, b.width),
                lerp(a.height, b.height),
            )
        };
        Some(Region {
            left: x - self.padding,
            top: y - self.padding,
            right: x + width + self.padding,
            bottom: y + height + self.padding,
            shape: self.shape,
        })
    }

    /// Returns the fill of the mask's style with its defaults applied.
    pub fn fill(&self) -> Fill {
        match self.style {
            Style::Solid => {
                let rgb = self
                    .color
                    .as_deref()
                    .and_then(parse_color)
                    .unwrap_or([0, 0, 0]);
                Fill::Solid(rgb_to_yuv(rgb))
            }
            Style::Pixelate => Fill::Pixelate(self.cell.unwrap_or(DEFAULT_CELL)),
            Style::Blur => Fill::Blur(self.radius.unwrap_or(DEFAULT_BLUR_RADIUS)),
        }
    }

    /// Returns whether the mask is active at any moment of `[from, to)`.
    pub fn is_active_within(&self, from: f64, to: f64) -> bool {
        let start = self.from.unwrap_or(f64::NEG_INFINITY);
        let end = self.to.unwrap_or(f64::INFINITY);
        start < to && from < end
    }
}

impl Region {
    /// Returns whether the region overlaps a picture of this size at all.
    pub fn overlaps(&self, width: u32, height: u32) -> bool {
        self.right > 0.0
            && self.bottom > 0.0
            && self.left < f64::from(width)
            && self.top < f64::from(height)
    }

    /// Maps a region from display coordinates into the stored picture of a
    /// track rotated clockwise by `rotation` degrees for display.
    pub fn to_stored(self, rotation: u32, stored_width: u32, stored_height: u32) -> Region {
        let (w, h) = (f64::from(stored_width), f64::from(stored_height));
        let map = |dx: f64, dy: f64| -> (f64, f64) {
            match rotation {
                90 => (dy, h - dx),
                180 => (w - dx, h - dy),
                270 => (w - dy, dx),
                _ => (dx, dy),
            }
        };
        let (ax, ay) = map(self.left, self.top);
        let (bx, by) = map(self.right, self.bottom);
        Region {
            left: ax.min(bx),
            top: ay.min(by),
            right: ax.max(bx),
            bottom: ay.max(by),
            shape: self.shape,
        }
    }

    fn scaled(&self, factor: f64) -> Region {
        Region {
            left: self.left * factor,
            top: self.top * factor,
            right: self.right * factor,
            bottom: self.bottom * factor,
            shape: self.shape,
        }
    }

    /// Whether the pixel whose top-left corner is (px, py) belongs to the
    /// region, judged at the pixel's centre.
    fn contains(&self, px: usize, py: usize) -> bool {
        let (x, y) = (px as f64 + 0.5, py as f64 + 0.5);
        match self.shape {
            Shape::Rectangle => {
                x >= self.left && x < self.right && y >= self.top && y < self.bottom
            }
            Shape::Ellipse => {
                let rx = (self.right - self.left) / 2.0;
                let ry = (self.bottom - self.top) / 2.0;
                let dx = (x - (self.left + rx)) / rx;
                let dy = (y - (self.top + ry)) / ry;
                dx * dx + dy * dy <= 1.0
            }
        }
    }

    /// Pixel bounds `[x0, x1) × [y0, y1)` clipped to a plane.
    fn bounds(&self, width: usize, height: usize) -> Option<(usize, usize, usize, usize)> {
        let clip = |v: f64, max: usize| v.clamp(0.0, max as f64);
        let x0 = clip(self.left.floor(), width) as usize;
        let y0 = clip(self.top.floor(), height) as usize;
        let x1 = clip(self.right.ceil(), width) as usize;
        let y1 = clip(self.bottom.ceil(), height) as usize;
        (x0 < x1 && y0 < y1).then_some((x0, y0, x1, y1))
    }
}

/// Converts RGB to limited-range BT.601 YUV, the matrix x264 assumes for
/// standard-definition and camera footage without colour tags.
pub fn rgb_to_yuv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    [y.round() as u8, u.round() as u8, v.round() as u8]
}

/// One plane of a frame, borrowed for writing.
pub struct PlaneMut<'a> {
    pub data: &'a mut [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

/// Applies every placed mask to the three planes of an I420 frame whose
/// luma plane is `planes[0]`.
pub fn apply(planes: &mut [PlaneMut<'_>; 3], placed: &[Placed]) {
    for mask in placed {
        for (index, plane) in planes.iter_mut().enumerate() {
            let factor = if index == 0 { 1.0 } else { 0.5 };
            let region = mask.region.scaled(factor);
            match mask.fill {
                Fill::Solid(yuv) => fill_solid(plane, &region, yuv[index]),
                Fill::Pixelate(cell) => pixelate(
                    plane,
                    &region,
                    ((f64::from(cell) * factor).round() as usize).max(1),
                ),
                Fill::Blur(radius) => blur(
                    plane,
                    &region,
                    ((f64::from(radius) * factor).round() as usize).max(1),
                ),
            }
        }
    }
}

fn fill_solid(plane: &mut PlaneMut<'_>, region: &Region, value: u8) {
    let Some((x0, y0, x1, y1)) = region.bounds(plane.width, plane.height) else {
        return;
    };
    for y in y0..y1 {
        let row = &mut plane.data[y * plane.stride..y * plane.stride + plane.width];
        for (x, pixel) in row.iter_mut().enumerate().take(x1).skip(x0) {
            if region.contains(x, y) {
                *pixel = value;
            }
        }
    }
}

/// Replaces each cell of a grid anchored at the region's top-left corner
/// by the mean of the cell's pixels inside the region.
fn pixelate(plane: &mut PlaneMut<'_>, region: &Region, cell: usize) {
    let Some((x0, y0, x1, y1)) = region.bounds(plane.width, plane.height) else {
        return;
    };
    let origin_x = region.left.floor().max(0.0) as usize;
    let origin_y = region.top.floor().max(0.0) as usize;
    let mut cy = origin_y;
    while cy < y1 {
        let (row0, row1) = (cy.max(y0), (cy + cell).min(y1));
        let mut cx = origin_x;
        while cx < x1 {
            let (col0, col1) = (cx.max(x0), (cx + cell).min(x1));
            let mut sum = 0u64;
            let mut count = 0u64;
            for y in row0..row1 {
                for x in col0..col1 {
                    if region.contains(x, y) {
                        sum += u64::from(plane.data[y * plane.stride + x]);
                        count += 1;
                    }
                }
            }
            if count > 0 {
                let mean = ((sum + count / 2) / count) as u8;
                for y in row0..row1 {
                    for x in col0..col1 {
                        if region.contains(x, y) {
                            plane.data[y * plane.stride + x] = mean;
                        }
                    }
                }
            }
            cx += cell;
        }
        cy += cell;
    }
}

/// Blurs the region's bounding box with repeated box filters (edges
/// clamped inside the box, so nothing outside the mask leaks in or out)
/// and writes back only the pixels inside the shape.
fn blur(plane: &mut PlaneMut<'_>, region: &Region, radius: usize) {
    let Some((x0, y0, x1, y1)) = region.bounds(plane.width, plane.height) else {
        return;
    };
    let (w, h) = (x1 - x0, y1 - y0);
    let mut work: Vec<f32> = Vec::with_capacity(w * h);
    for y in y0..y1 {
        work.extend(
            plane.data[y * plane.stride + x0..y * plane.stride + x1]
                .iter()
                .map(|&p| f32::from(p)),
        );
    }
    let mut scratch = vec![0f32; w.max(h)];
    for _ in 0..BLUR_PASSES {
        for row in work.chunks_mut(w) {
            box_filter_line(row, 1, w, radius, &mut scratch);
        }
        for column in 0..w {
            box_filter_line(&mut work[column..], w, h, radius, &mut scratch);
        }
    }
    for y in y0..y1 {
        for x in x0..x1 {
            if region.contains(x, y) {
                plane.data[y * plane.stride + x] =
                    work[(y - y0) * w + (x - x0)].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// One box-filter pass over `len` samples spaced `step` apart, with a
/// running sum so the cost does not grow with the radius.
fn box_filter_line(data: &mut [f32], step: usize, len: usize, radius: usize, scratch: &mut [f32]) {
    let at = |i: isize, data: &[f32]| data[(i.clamp(0, len as isize - 1) as usize) * step];
    let r = radius as isize;
    let window = (2 * radius + 1) as f32;
    let mut sum: f32 = (-r..=r).map(|i| at(i, data)).sum();
    for i in 0..len as isize {
        scratch[i as usize] = sum / window;
        sum += at(i + r + 1, data) - at(i - r, data);
    }
    for i in 0..len {
        data[i * step] = scratch[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::spec::{Keyframe, Reason};

    fn mask(keys: &[(f64, f64, f64)]) -> Mask {
        Mask {
            id: None,
            shape: Shape::Rectangle,
            style: Style::Solid,
            color: None,
            cell: None,
            radius: None,
            padding: 2.0,
            from: None,
            to: Some(10.0),
            keyframes: keys
                .iter()
                .map(|&(at, x, width)| Keyframe {
                    at,
                    x,
                    y: 10.0,
                    width,
                    height: 20.0,
                })
                .collect(),
            reason: Reason::Other,
            basis: None,
            author: "a".into(),
        }
    }

    #[test]
    fn position_is_interpolated_linearly_between_keys() {
        let mask = mask(&[(1.0, 0.0, 10.0), (3.0, 100.0, 30.0)]);
        let region = mask.region_at(2.0).unwrap();
        assert_eq!(region.left, 50.0 - 2.0);
        assert_eq!(region.right, 50.0 + 20.0 + 2.0);
        assert_eq!(region.top, 8.0);
        assert_eq!(
            mask.region_at(0.0).unwrap().left,
            -2.0,
            "holds the first key before it"
        );
        assert_eq!(
            mask.region_at(5.0).unwrap().left,
            98.0,
            "holds the last key after it"
        );
        assert!(mask.region_at(10.0).is_none(), "the end is exclusive");
    }

    #[test]
    fn rotated_region_maps_into_stored_picture() {
        // A 320x240 stored picture shown rotated 90° clockwise is 240x320.
        let region = Region {
            left: 0.0,
            top: 0.0,
            right: 10.0,
            bottom: 20.0,
            shape: Shape::Rectangle,
        };
        let stored = region.to_stored(90, 320, 240);
        assert_eq!(
            (stored.left, stored.top, stored.right, stored.bottom),
            (0.0, 230.0, 20.0, 240.0)
        );
    }

    #[test]
    fn pixelated_cells_are_flat() {
        let (w, h) = (64usize, 64usize);
        let mut data: Vec<u8> = (0..w * h).map(|i| ((i * 37) % 251) as u8).collect();
        let mut plane = PlaneMut {
            data: &mut data,
            stride: w,
            width: w,
            height: h,
        };
        let region = Region {
            left: 8.0,
            top: 8.0,
            right: 40.0,
            bottom: 40.0,
            shape: Shape::Rectangle,
        };
        pixelate(&mut plane, &region, 8);
        for cy in 0..4 {
            for cx in 0..4 {
                let first = data[(8 + cy * 8) * w + 8 + cx * 8];
                for y in 0..8 {
                    for x in 0..8 {
                        assert_eq!(data[(8 + cy * 8 + y) * w + 8 + cx * 8 + x], first);
                    }
                }
            }
        }
        assert_eq!(data[0], 0, "outside the region nothing changes");
        assert_eq!(data[w * h - 1], (((w * h - 1) * 37) % 251) as u8);
    }

    #[test]
    fn blur_removes_detail_inside_ellipse_only() {
        let (w, h) = (64usize, 64usize);
        let original: Vec<u8> = (0..w * h)
            .map(|i| if (i / w + i % w) % 2 == 0 { 0 } else { 255 })
            .collect();
        let mut data = original.clone();
        let mut plane = PlaneMut {
            data: &mut data,
            stride: w,
            width: w,
            height: h,
        };
        let region = Region {
            left: 16.0,
            top: 16.0,
            right: 48.0,
            bottom: 48.0,
            shape: Shape::Ellipse,
        };
        blur(&mut plane, &region, 4);
        let centre = data[32 * w + 32];
        assert!(
            (120..=135).contains(&centre),
            "a checkerboard blurs to grey, found {centre}"
        );
        assert_eq!(
            data[16 * w + 16],
            original[16 * w + 16],
            "the box corner is outside the ellipse"
        );
    }
}
