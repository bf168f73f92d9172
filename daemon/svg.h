/*
 * svg: the few shapes the report's charts are drawn with (daemon/report.c),
 * written into an html buffer as inline SVG: no script, no external
 * reference, nothing a browser must fetch. Inline SVG in HTML needs no
 * namespace declaration, so the page holds no URL at all.
 *
 * Coordinates are in the picture's own units (the viewBox, y pointing down);
 * the picture scales to the width of the page. Geometry is double: charts
 * are drawn from money and energy that were summed exactly, and only the
 * drawing is approximate. Colours and dash patterns are literals of the
 * caller's code; every text is escaped.
 */
#ifndef DAEMON_SVG_H
#define DAEMON_SVG_H

#include "daemon/html.h"

#include <stddef.h>

enum svg_anchor { SVG_START, SVG_MIDDLE, SVG_END };

/* Opens a picture width x height units, labelled for screen readers. */
void svg_begin(struct html *h, double width, double height, const char *label);
void svg_end(struct html *h);

void svg_rect(struct html *h, double x, double y, double w, double ht, const char *fill);
/* dash: an SVG dash array ("4 3"), or NULL for a solid line. */
void svg_line(struct html *h, double x1, double y1, double x2, double y2, const char *stroke,
              double width, const char *dash);
/* One line through n points in order; a point whose y is NaN breaks it. */
void svg_path(struct html *h, const double *x, const double *y, size_t n, const char *stroke,
              double width);
void svg_circle(struct html *h, double cx, double cy, double r, const char *fill);
/* Text with a white halo, so it stays legible over grid lines and curves. */
void svg_text(struct html *h, double x, double y, double size, enum svg_anchor anchor,
              const char *fill, const char *text);

/* A tick step of 1, 2 or 5 times a power of ten that divides 0..max into
 * at most about n steps (max > 0). */
double svg_nice_step(double max, int n);

#endif
