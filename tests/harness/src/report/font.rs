// SPDX-License-Identifier: GPL-2.0

//! Text for the plots without a font stack.
//!
//! plotters 0.3 draws text only through a system font stack (font-kit and
//! fontconfig) or not at all. To need neither, text goes through
//! [`TextBackend`], a wrapper around the bitmap backend that draws labels
//! with the pre-rasterised Noto Sans Mono glyphs of the
//! `noto-sans-mono-bitmap` crate (compiled in: no font files needed).

use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
