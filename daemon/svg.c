#include "svg.h"

#include <math.h>
#include <stdbool.h>

void svg_begin(struct html *h, double width, double height, const char *label)
{
    html_printf(h,
                "<svg viewBox=\"0 0 %.0f %.0f\" "
                "role=\"img\" aria-label=\"",
                width, height);
    html_text(h, label);
    html_raw(h, "\" font-family=\"sans-serif\">\n");
}

void svg_end(struct html *h)
{
    html_raw(h, "</svg>\n");
}

void svg_rect(struct html *h, double x, double y, double w, double ht, const char *fill)
{
    html_printf(h, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n", x,
                y, w, ht, fill);
}

void svg_line(struct html *h, double x1, double y1, double x2, double y2, const char *stroke,
              double width, const char *dash)
{
    html_printf(h,
                "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                "stroke-width=\"%.2f\"",
                x1, y1, x2, y2, stroke, width);
    if (dash)
        html_printf(h, " stroke-dasharray=\"%s\"", dash);
    html_raw(h, "/>\n");
}

void svg_path(struct html *h, const double *x, const double *y, size_t n, const char *stroke,
              double width)
{
    html_raw(h, "<path d=\"");
    bool pen_down = false;
    for (size_t i = 0; i < n; i++) {
        if (isnan(y[i])) {
            pen_down = false;
            continue;
        }
        html_printf(h, "%s%.1f %.1f", pen_down ? "L" : "M", x[i], y[i]);
        pen_down = true;
    }
    html_printf(h,
                "\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\" "
                "stroke-linejoin=\"round\"/>\n",
                stroke, width);
}

void svg_circle(struct html *h, double cx, double cy, double r, const char *fill)
{
    html_printf(h, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"%s\"/>\n", cx, cy, r, fill);
}

void svg_text(struct html *h, double x, double y, double size, enum svg_anchor anchor,
              const char *fill, const char *text)
{
    static const char *const anchors[] = {"start", "middle", "end"};
    html_printf(h,
                "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.1f\" text-anchor=\"%s\" "
                "fill=\"%s\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">",
                x, y, size, anchors[anchor], fill);
    html_text(h, text);
    html_raw(h, "</text>\n");
}

double svg_nice_step(double max, int n)
{
    double raw = max / n;
    double p = pow(10, floor(log10(raw)));
    double f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}
