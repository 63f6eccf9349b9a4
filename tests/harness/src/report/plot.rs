// SPDX-License-Identifier: GPL-2.0

//! PNG line plots for `demo` (plotters, bitmap backend; text through
//! [`crate::report::font::TextBackend`]).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::font::{text_size, TextBackend};

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
    /// Its colour, drawn light.
    pub color: RGBColor,
}

/// The colour of a band that stands alone (the blackout).
pub const BAND_COLOR: RGBColor = RGBColor(255, 200, 120);

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
    /// Where the legend goes (out of the data's way).
    pub legend: SeriesLabelPosition,
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

fn plot_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// Draws the title and the notes centred at the top; returns the height used.
fn draw_heading<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &LinePlot) -> Result<i32>
where
    DB::ErrorType: 'static,
{
    let e = plot_err::<DB::ErrorType>;
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
    Ok(y0)
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws each series: a line per segment with a dot per point, labelled once.
fn draw_lines<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, p: &LinePlot) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = plot_err::<DB::ErrorType>;
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
    Ok(())
}

/// Draws `p` into `root` (the whole image or one panel of it), not yet presented.
fn draw_in<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &LinePlot) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = plot_err::<DB::ErrorType>;
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
    let y0 = draw_heading(root, p)?;
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
    for b in &p.bands {
        let band_color = b.color;
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
    draw_lines(&mut chart, p)?;
    chart
        .configure_series_labels()
        .position(p.legend.clone())
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Draws `plots` stacked top to bottom, one panel each, and presents the image.
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, plots: &[LinePlot]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let panels = root.split_evenly((plots.len().max(1), 1));
    for (area, p) in panels.iter().zip(plots) {
        draw_in(area, p)?;
    }
    root.present().map_err(plot_err::<DB::ErrorType>)?;
    Ok(())
}

/// Says where the plot `written` to `path` went, or why it failed (the run goes on without
/// it): whether it was written.
pub fn announce_png(path: &Path, written: Result<()>) -> bool {
    match written {
        Ok(()) => {
            println!("plot: {}", path.display());
            true
        }
        Err(e) => {
            eprintln!("migtime-harness: plot failed: {e:#}");
            false
        }
    }
}

/// Renders `p` to a PNG file of `size` pixels.
pub fn line_plot_png(path: &Path, size: (u32, u32), p: &LinePlot) -> Result<()> {
    line_plots_png(path, size, std::slice::from_ref(p))
}

/// Renders `plots` to one PNG file, stacked, each panel `size` pixels.
pub fn line_plots_png(path: &Path, size: (u32, u32), plots: &[LinePlot]) -> Result<()> {
    let n = plots.len().max(1) as u32;
    let root = TextBackend(BitMapBackend::new(path, (size.0, size.1 * n))).into_drawing_area();
    draw(root, plots)
}

/// Renders `plots` stacked into an RGB buffer of `size` pixels in all (tests).
#[cfg(test)]
pub fn line_plots_rgb(size: (u32, u32), plots: &[LinePlot]) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = TextBackend(BitMapBackend::with_buffer(&mut buf, size)).into_drawing_area();
        draw(root, plots)?;
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

    fn one(color: RGBColor) -> LinePlot {
        LinePlot {
            title: "T".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                label: "s".into(),
                color,
                segments: vec![vec![(0.0, 0.0), (1.0, 1.0)]],
            }],
            bands: vec![],
            notes: vec![],
            legend: SeriesLabelPosition::LowerLeft,
        }
    }

    /// Pixels of about `c` in rows `y0..y1` of a `w` wide RGB buffer.
    fn count(buf: &[u8], w: u32, y0: u32, y1: u32, c: RGBColor) -> usize {
        let near = |a: u8, b: u8| a.abs_diff(b) < 40;
        buf[(y0 * w * 3) as usize..(y1 * w * 3) as usize]
            .chunks(3)
            .filter(|p| near(p[0], c.0) && near(p[1], c.1) && near(p[2], c.2))
            .count()
    }

    #[test]
    fn stacked_panels_each_hold_their_own_plot() {
        let (red, blue) = (RGBColor(220, 20, 20), RGBColor(20, 20, 220));
        let (w, h) = (400, 600);
        let buf = line_plots_rgb((w, h), &[one(red), one(blue)]).unwrap();
        assert!(count(&buf, w, 0, h / 2, red) > 50, "red in the top panel");
        assert_eq!(count(&buf, w, h / 2, h, red), 0, "no red below");
        assert!(
            count(&buf, w, h / 2, h, blue) > 50,
            "blue in the bottom panel"
        );
        assert_eq!(count(&buf, w, 0, h / 2, blue), 0, "no blue above");
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
                color: BAND_COLOR,
            }],
            notes: vec![],
            legend: SeriesLabelPosition::LowerLeft,
        };
        let (w, h) = (400, 300);
        let buf = line_plots_rgb((w, h), &[p]).unwrap();
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
