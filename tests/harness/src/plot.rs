// SPDX-License-Identifier: GPL-2.0

//! PNG line plots for `demo` (plotters, bitmap backend).
//!
//! plotters 0.3 draws text only through a system font stack (font-kit and
//! fontconfig) or not at all. To need neither, text goes through
//! [`TextBackend`], a wrapper around the bitmap backend that draws labels
//! with the pre-rasterised Noto Sans Mono glyphs of the
//! `noto-sans-mono-bitmap` crate (compiled in: no font files needed).

use std::path::Path;

use anyhow::{anyhow, Result};
use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters_backend::{
    text_anchor::{HPos, VPos},
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};

/// The raster height used for a requested font size (px).
fn raster_for(size: f64) -> RasterHeight {
    if size < 18.0 {
        RasterHeight::Size16
    } else if size < 22.0 {
        RasterHeight::Size20
    } else {
        RasterHeight::Size24
    }
}

/// Width and height in pixels of `text` at font `size`.
pub fn text_size(text: &str, size: f64) -> (u32, u32) {
    let h = raster_for(size);
    let w = get_raster_width(FontWeight::Regular, h);
    ((w * text.chars().count()) as u32, h.val() as u32)
}

/// Renders `text` as (x, y, intensity 0..=255) pixels, origin at the top left.
pub fn text_pixels(text: &str, size: f64) -> Vec<(i32, i32, u8)> {
    let h = raster_for(size);
    let w = get_raster_width(FontWeight::Regular, h);
    let mut out = Vec::new();
    for (i, c) in text.chars().enumerate() {
        let Some(r) = get_raster(c, FontWeight::Regular, h)
            .or_else(|| get_raster('?', FontWeight::Regular, h))
        else {
            continue;
        };
        for (y, row) in r.rows().enumerate() {
            for (x, &v) in row.iter().enumerate() {
                if v > 0 {
                    out.push(((i * w + x) as i32, y as i32, v));
                }
            }
        }
    }
    out
}

/// A drawing backend that delegates everything to `B` except text, which it
/// draws with the compiled-in bitmap font.
pub struct TextBackend<B: DrawingBackend>(pub B);

impl<B: DrawingBackend> DrawingBackend for TextBackend<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        p: BackendCoord,
        c: BackendColor,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_line(a, b, s)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_rect(a, b, s, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        p: I,
        s: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_path(p, s)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        c: BackendCoord,
        r: u32,
        s: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_circle(c, r, s, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        v: I,
        s: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.fill_polygon(v, s)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        wh: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.blit_bitmap(pos, wh, src)
    }

    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let (w, h) = text_size(text, style.size());
        let (w, h) = (w as i32, h as i32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -w,
            HPos::Center => -w / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let trans = style.transform();
        let (sw, sh) = self.get_size();
        for (x, y, v) in text_pixels(text, style.size()) {
            let (x, y) = trans.transform(x + dx, y + dy);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if x >= 0 && y >= 0 && x < sw as i32 && y < sh as i32 {
                let c = BackendColor {
                    alpha: color.alpha * f64::from(v) / 255.0,
                    rgb: color.rgb,
                };
                self.0.draw_pixel((x, y), c)?;
            }
        }
        Ok(())
    }

    fn estimate_text_size<T: BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> Result<(u32, u32), DrawingErrorKind<B::ErrorType>> {
        Ok(text_size(text, style.size()))
    }
}

/// One line of a plot.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    /// Runs of (x, y) points; each drawn as a line with a dot per point
    /// (no line between runs, e.g. across a gap in the data).
    pub segments: Vec<Vec<(f64, f64)>>,
}

/// A shaded vertical band (e.g. the blackout), with its label.
#[derive(Clone, Debug)]
pub struct Band {
    pub label: String,
    pub from: f64,
    pub to: f64,
}

/// What to draw.
#[derive(Clone, Debug)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
    /// Extra lines of text under the title.
    pub notes: Vec<String>,
}

fn range(vals: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 1.0, hi + 1.0);
    }
    let p = (hi - lo) * pad;
    (lo - p, hi + p)
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, p: &LinePlot) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plotting: {e}");
    root.fill(&WHITE).map_err(e)?;
    let (xr, yr) = {
        let xs = p
            .series
            .iter()
            .flat_map(|s| s.segments.iter().flatten().map(|q| q.0))
            .chain(p.bands.iter().flat_map(|b| [b.from, b.to]));
        let ys = p
            .series
            .iter()
            .flat_map(|s| s.segments.iter().flatten().map(|q| q.1));
        (range(xs, 0.02), range(ys.chain([0.0]), 0.08))
    };
    let (w, _) = root.dim_in_pixel();
    root.draw(&Text::new(
        p.title.clone(),
        (w as i32 / 2 - text_size(&p.title, 24.0).0 as i32 / 2, 10),
        ("sans-serif", 24).into_font(),
    ))
    .map_err(e)?;
    let mut y0 = 42;
    for line in &p.notes {
        let x = w as i32 / 2 - text_size(line, 16.0).0 as i32 / 2;
        root.draw(&Text::new(
            line.clone(),
            (x, y0),
            ("sans-serif", 16).into_font().color(&RGBColor(80, 80, 80)),
        ))
        .map_err(e)?;
        y0 += 20;
    }
    let top = root.margin(y0 as u32 + 6, 10, 10, 25);
    let mut chart = ChartBuilder::on(&top)
        .x_label_area_size(46)
        .y_label_area_size(80)
        .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 20))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(e)?;
    let band_color = RGBColor(255, 200, 120);
    for b in &p.bands {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(b.from, yr.0), (b.to, yr.1)],
                band_color.mix(0.35).filled(),
            )))
            .map_err(e)?
            .label(b.label.clone())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 20, y + 6)], band_color.mix(0.5).filled())
            });
    }
    // The zero line: no clock error introduced.
    chart
        .draw_series(LineSeries::new([(xr.0, 0.0), (xr.1, 0.0)], BLACK.mix(0.4)))
        .map_err(e)?;
    for s in &p.series {
        let c = s.color;
        for (i, seg) in s.segments.iter().enumerate() {
            let a = chart
                .draw_series(LineSeries::new(
                    seg.iter().copied(),
                    Color::stroke_width(&c, 2),
                ))
                .map_err(e)?;
            if i == 0 {
                a.label(s.label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], Color::stroke_width(&c, 3))
                });
            }
            chart
                .draw_series(seg.iter().map(|&q| Circle::new(q, 2, c.filled())))
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// Renders `p` to a PNG file of `size` pixels.
pub fn line_plot_png(path: &Path, size: (u32, u32), p: &LinePlot) -> Result<()> {
    let root = TextBackend(BitMapBackend::new(path, size)).into_drawing_area();
    draw(root, p)
}

/// Renders `p` into an RGB buffer (tests).
#[cfg(test)]
pub fn line_plot_rgb(size: (u32, u32), p: &LinePlot) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = TextBackend(BitMapBackend::with_buffer(&mut buf, size)).into_drawing_area();
        draw(root, p)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dark(buf: &[u8], w: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = ((y * w + x) * 3) as usize;
                if buf[i] < 128 && buf[i + 1] < 128 && buf[i + 2] < 128 {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn text_is_rasterised_from_the_compiled_in_font() {
        let (w, h) = text_size("abc", 16.0);
        assert_eq!(h, 16);
        assert_eq!(w % 3, 0);
        assert!(w >= 3 * 6);
        let px = text_pixels("I", 16.0);
        assert!(px.len() > 5, "a glyph has pixels");
        assert!(px
            .iter()
            .all(|&(x, y, _)| x >= 0 && (x as u32) < w / 3 && (0..16).contains(&y)));
        assert!(text_pixels(" ", 16.0).is_empty());
        // Larger sizes use a larger raster.
        assert_eq!(text_size("a", 24.0).1, 24);
    }

    #[test]
    fn plot_draws_title_text_and_lines() {
        let p = LinePlot {
            title: "TITLE".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                label: "s".into(),
                color: RED,
                segments: vec![vec![(0.0, 0.0), (1.0, 1.0)], vec![(2.0, -1.0), (2.5, 0.0)]],
            }],
            bands: vec![Band {
                label: "band".into(),
                from: 0.5,
                to: 1.0,
            }],
            notes: vec![],
        };
        let (w, h) = (400, 300);
        let buf = line_plot_rgb((w, h), &p).unwrap();
        // The title is centred at the top: dark text pixels there.
        assert!(dark(&buf, w, 150, 0, 250, 40) > 20, "title text drawn");
        // Red line pixels somewhere.
        let red = buf
            .chunks(3)
            .filter(|c| c[0] > 200 && c[1] < 80 && c[2] < 80)
            .count();
        assert!(red > 50, "series drawn ({red} red pixels)");
    }
}
