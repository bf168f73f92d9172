#include "report_page.h"

#include "daemon/svg.h"
#include "tariff/alloc.h"
#include "tariff/civil.h"
#include "tariff/decimal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Chinese and English for each period, and the colour it is drawn in
 * (from the night's dark blue to the evening's red). */
static const char *const period_zh[PERIOD_COUNT] = {"深谷", "低谷", "平段", "高峰", "尖峰"};
static const char *const period_en[PERIOD_COUNT] = {"deep valley", "valley", "flat", "peak",
                                                    "critical peak"};
static const char *const period_colour[PERIOD_COUNT] = {"#1d3f72", "#3d7cc9", "#9fbfa0", "#f0a33a",
                                                        "#d2452c"};

static const char *const month_en[12] = {"January",   "February", "March",    "April",
                                         "May",       "June",     "July",     "August",
                                         "September", "October",  "November", "December"};

/* v at the given scale with exactly `places` decimals and thousands
 * separators ("1,234,567.89"). places <= scale rounds half-even. */
static const char *amount(int64_t v, int scale, int places, char *buf, size_t size)
{
    char plain[40];
    decimal_format(decimal_rescale_half_even(v, scale, places), places, plain, sizeof plain);
    const char *digits = plain + (plain[0] == '-');
    size_t int_len = strcspn(digits, ".");
    char *o = buf, *end = buf + size - 1;
    if (plain[0] == '-' && o < end)
        *o++ = '-';
    for (size_t i = 0; digits[i] && o < end; i++) {
        if (i > 0 && i < int_len && (int_len - i) % 3 == 0 && o < end)
            *o++ = ',';
        if (o < end)
            *o++ = digits[i];
    }
    *o = '\0';
    return buf;
}

/* "2025-12-01 20:15" in local time. */
static const char *local_time(int64_t ts_s, int32_t offset_s, char *buf, size_t size)
{
    struct civil_date d = civil_from_day(civil_local_day(ts_s, offset_s));
    int32_t sod = civil_local_second_of_day(ts_s, offset_s);
    snprintf(buf, size, "%04d-%02d-%02d %02d:%02d", (int)d.year, (int)d.month, (int)d.day,
             (int)(sod / 3600), (int)(sod / 60 % 60));
    return buf;
}

/* "UTC+08:00" */
static const char *offset_name(int32_t offset_s, char *buf, size_t size)
{
    int32_t a = offset_s < 0 ? -offset_s : offset_s;
    snprintf(buf, size, "UTC%c%02d:%02d", offset_s < 0 ? '-' : '+', (int)(a / 3600),
             (int)(a / 60 % 60));
    return buf;
}

/* A table cell holding an amount: right-aligned, with the exact value in
 * data-value and, for the totals row, a stable id. */
static void money_cell(struct html *h, int64_t v, int scale, int places, const char *id)
{
    char shown[48], exact[40];
    decimal_format(v, scale, exact, sizeof exact);
    html_raw(h, "<td class=\"n\"");
    if (id)
        html_printf(h, " id=\"%s\"", id);
    html_printf(h, " data-value=\"%s\">%s</td>", exact,
                amount(v, scale, places, shown, sizeof shown));
}

/* The net per PFLOP-hour of rated compute to 4 decimals, as tariffd price
 * shows it, or "—" with an empty data-value where there is none. Returns
 * whether there is one. */
static bool per_pflop_hour_cell(struct html *h, const struct statement *st, const char *id)
{
    int64_t cny4;
    if (statement_cny4_per_pflop_hour(st, &cny4)) {
        money_cell(h, cny4, 4, 4, id);
        return true;
    }
    html_raw(h, "<td class=\"n\"");
    if (id)
        html_printf(h, " id=\"%s\"", id);
    html_raw(h, " data-value=\"\">—</td>");
    return false;
}

static void heading(struct html *h, const char *level, const char *zh, const char *en)
{
    html_printf(h, "<%s>%s <span class=\"en\">%s</span></%s>\n", level, zh, en, level);
}

/* ------------------------------------------------------------------ */
/* Tables                                                              */

static void statement_table(struct html *h, const struct report_model *m)
{
    heading(h, "h2", "账单明细", "Statement");
    html_raw(h, "<table class=\"statement\">\n<thead><tr>"
                "<th>集群<br><span class=\"en\">Cluster</span></th>"
                "<th>省份<br><span class=\"en\">Province</span></th>"
                "<th class=\"n\">电量 kWh<br><span class=\"en\">Energy</span></th>"
                "<th class=\"n\">电度电费<br><span class=\"en\">Energy charge</span></th>"
                "<th class=\"n\">政府性基金及附加<br><span class=\"en\">Fund surcharge</span></th>"
                "<th class=\"n\">基本电费<br><span class=\"en\">Demand charge</span></th>"
                "<th class=\"n\">补贴<br><span class=\"en\">Subsidy</span></th>"
                "<th class=\"n\">应付净额<br><span class=\"en\">Net</span></th>"
                "<th class=\"n\">元/PFLOP·时<br><span class=\"en\">CNY per PFLOP-hour</span></th>"
                "</tr></thead>\n<tbody>\n");
    int64_t kwh = 0, energy = 0, surcharge = 0, demand = 0, subsidy = 0, net = 0;
    /* The total per PFLOP-hour: the total net over the total rated compute,
     * only when every line has a figure of its own. */
    struct statement compute = {0};
    bool every_line = true;
    for (size_t i = 0; i < m->n_clusters; i++) {
        const struct report_cluster *c = &m->clusters[i];
        html_raw(h, "<tr data-cluster=\"");
        html_text(h, c->cluster);
        html_raw(h, "\"><td>");
        html_text(h, c->cluster);
        html_raw(h, "</td><td>");
        html_text(h, c->province);
        html_raw(h, "</td>");
        money_cell(h, c->kwh_micro, 6, 3, NULL);
        money_cell(h, c->energy_fen, 2, 2, NULL);
        money_cell(h, c->surcharge_fen, 2, 2, NULL);
        money_cell(h, c->demand_fen, 2, 2, NULL);
        money_cell(h, c->subsidy_fen, 2, 2, NULL);
        money_cell(h, c->net_fen, 2, 2, NULL);
        every_line &= per_pflop_hour_cell(h, &c->compute, NULL);
        html_raw(h, "</tr>\n");
        compute.net_cny4 += c->compute.net_cny4;
        compute.pflop_s_micro += c->compute.pflop_s_micro;
        kwh += c->kwh_micro;
        energy += c->energy_fen;
        surcharge += c->surcharge_fen;
        demand += c->demand_fen;
        subsidy += c->subsidy_fen;
        net += c->net_fen;
    }
    html_raw(h, "</tbody>\n<tfoot><tr class=\"total\"><td colspan=\"2\">合计 "
                "<span class=\"en\">Total (CNY)</span></td>");
    money_cell(h, kwh, 6, 3, "total-kwh");
    money_cell(h, energy, 2, 2, "total-energy_charge");
    money_cell(h, surcharge, 2, 2, "total-surcharge");
    money_cell(h, demand, 2, 2, "total-demand_charge");
    money_cell(h, subsidy, 2, 2, "total-subsidy");
    money_cell(h, net, 2, 2, "total-net");
    compute.pflops_unrated = !every_line;
    per_pflop_hour_cell(h, &compute, "total-cny_per_pflop_hour");
    html_raw(h, "</tr></tfoot>\n</table>\n");
}

static void period_table(struct html *h, const struct report_model *m)
{
    heading(h, "h3", "分时段电量", "Energy by time-of-use period");
    html_raw(h,
             "<table class=\"narrow\">\n<thead><tr><th>时段 <span class=\"en\">Period</span></th>"
             "<th class=\"n\">电量 kWh <span class=\"en\">Energy</span></th>"
             "<th class=\"n\">电度电费 <span class=\"en\">Energy charge</span></th>"
             "</tr></thead>\n<tbody>\n");
    for (int p = PERIOD_COUNT - 1; p >= 0; p--) {
        const struct report_period *rp = &m->periods[p];
        if (!rp->seen)
            continue;
        html_printf(h,
                    "<tr data-period=\"%s\"><td><span class=\"swatch\" "
                    "style=\"background:%s\"></span>%s <span class=\"en\">%s</span></td>",
                    period_name((enum period)p), period_colour[p], period_zh[p], period_en[p]);
        money_cell(h, rp->kwh_micro, 6, 3, NULL);
        money_cell(h, rp->energy_fen, 2, 2, NULL);
        html_raw(h, "</tr>\n");
    }
    html_raw(h, "</tbody>\n</table>\n");
}

static void subsidy_table(struct html *h, const struct report_model *m)
{
    heading(h, "h3", "补贴项目", "Subsidy by programme");
    if (!m->n_programmes) {
        html_raw(h, "<p>本月无补贴。 <span class=\"en\">No programme paid a subsidy on this "
                    "month.</span></p>\n");
        return;
    }
    html_raw(h, "<table>\n<thead><tr><th>补贴项目 <span class=\"en\">Programme</span></th>"
                "<th>集群 <span class=\"en\">Cluster</span></th>"
                "<th class=\"n\">本月 <span class=\"en\">This month</span></th>"
                "<th class=\"n\">本年累计 <span class=\"en\">Year to date</span></th>"
                "<th class=\"n\">年度上限 <span class=\"en\">Yearly cap</span></th>"
                "<th class=\"n\">剩余额度 <span class=\"en\">Cap left</span></th>"
                "</tr></thead>\n<tbody>\n");
    for (size_t i = 0; i < m->n_programmes; i++) {
        const struct report_programme *g = &m->programmes[i];
        for (size_t k = 0; k < g->n_clusters; k++) {
            html_raw(h, "<tr class=\"sub\"><td>");
            html_text(h, g->programme);
            html_raw(h, "</td><td>");
            html_text(h, g->clusters[k].cluster);
            html_raw(h, "</td>");
            money_cell(h, g->clusters[k].fen, 2, 2, NULL);
            html_raw(h, "<td></td><td></td><td></td></tr>\n");
        }
        html_raw(h, "<tr class=\"programme\" data-programme=\"");
        html_text(h, g->programme);
        html_raw(h, "\"><td>");
        html_text(h, g->programme);
        html_raw(h, "</td><td>合计 <span class=\"en\">all clusters</span></td>");
        money_cell(h, g->month_fen, 2, 2, NULL);
        money_cell(h, g->year_to_date_fen, 2, 2, NULL);
        if (g->has_cap) {
            money_cell(h, g->cap_cny4, 4, 2, NULL);
            money_cell(h, g->cap_remaining_fen, 2, 2, NULL);
        } else {
            html_raw(h, "<td class=\"n\">无上限 <span class=\"en\">none</span></td><td></td>");
        }
        html_raw(h, "</tr>\n");
    }
    html_raw(h, "</tbody>\n</table>\n");
}

/* ------------------------------------------------------------------ */
/* Charts                                                              */

#define CHART_W 1000.0

struct frame {
    double left, top, width, height; /* the plot area */
    double y_max;                    /* the value at the top */
};

static double frame_y(const struct frame *f, double v)
{
    return f->top + f->height - v / f->y_max * f->height;
}

/* Horizontal grid lines with their values at the left, and the unit. */
static void y_axis(struct html *h, struct frame *f, double max, const char *unit)
{
    double step = svg_nice_step(max > 0 ? max : 1, 5);
    f->y_max = ceil((max > 0 ? max : 1) / step) * step;
    char label[32];
    for (double v = 0; v <= f->y_max + step / 2; v += step) {
        double y = frame_y(f, v);
        svg_line(h, f->left, y, f->left + f->width, y, v == 0 ? "#555" : "#ddd", 1, NULL);
        snprintf(label, sizeof label, "%g", v);
        svg_text(h, f->left - 6, y + 4, 12, SVG_END, "#444", label);
    }
    svg_text(h, f->left - 6, f->top - 8, 12, SVG_END, "#444", unit);
}

static void daily_chart(struct html *h, const struct report_model *m)
{
    heading(h, "h3", "每日电量（按时段）", "Daily energy by time-of-use period");
    double max = 0;
    bool seen[PERIOD_COUNT] = {0};
    for (int d = 0; d < m->days_in_month; d++) {
        double total = 0;
        for (int p = 0; p < PERIOD_COUNT; p++) {
            total += m->day_kwh_micro[d][p] / 1e6;
            seen[p] |= m->day_kwh_micro[d][p] != 0;
        }
        max = total > max ? total : max;
    }
    bool mwh = max >= 10000;
    double scale = mwh ? 1e-3 : 1;
    struct frame f = {.left = 70, .top = 34, .width = CHART_W - 90, .height = 220};
    svg_begin(h, CHART_W, 290, "daily energy by time-of-use period");
    y_axis(h, &f, max * scale, mwh ? "MWh" : "kWh");
    double slot = f.width / m->days_in_month;
    char label[32];
    for (int d = 0; d < m->days_in_month; d++) {
        double base = 0, x = f.left + slot * d + slot * 0.15;
        for (int p = 0; p < PERIOD_COUNT; p++) {
            double v = m->day_kwh_micro[d][p] / 1e6 * scale;
            if (v <= 0)
                continue;
            double y0 = frame_y(&f, base), y1 = frame_y(&f, base + v);
            svg_rect(h, x, y1, slot * 0.7, y0 - y1, period_colour[p]);
            base += v;
        }
        snprintf(label, sizeof label, "%d", d + 1);
        svg_text(h, f.left + slot * (d + 0.5), f.top + f.height + 16, 11, SVG_MIDDLE, "#444",
                 label);
    }
    svg_text(h, f.left + f.width, f.top + f.height + 34, 12, SVG_END, "#444",
             "日 day of the month");
    /* The legend, left to right from the night's periods. */
    double lx = f.left + 10;
    for (int p = 0; p < PERIOD_COUNT; p++) {
        if (!seen[p])
            continue;
        char name[64];
        snprintf(name, sizeof name, "%s %s", period_zh[p], period_en[p]);
        svg_rect(h, lx, 8, 12, 12, period_colour[p]);
        svg_text(h, lx + 16, 18, 12, SVG_START, "#333", name);
        lx += 30 + 8.5 * (double)strlen(name);
    }
    if (max == 0)
        svg_text(h, f.left + f.width / 2, f.top + f.height / 2, 14, SVG_MIDDLE, "#888",
                 "本月无电量 no energy in this month");
    svg_end(h);
}

/* x positions over [from_s, to_s) with ticks every few hours or days. */
static void time_axis(struct html *h, const struct frame *f, int64_t from_s, int64_t to_s,
                      int32_t offset_s)
{
    int64_t span = to_s - from_s;
    int64_t step = span <= 2 * 86400 ? 3 * 3600 : span <= 16 * 86400 ? 86400 : 2 * 86400;
    char label[32];
    for (int64_t t = from_s; t <= to_s; t += step) {
        double x = f->left + (double)(t - from_s) / (double)span * f->width;
        svg_line(h, x, f->top, x, f->top + f->height, "#eee", 1, NULL);
        struct civil_date d = civil_from_day(civil_local_day(t, offset_s));
        int32_t sod = civil_local_second_of_day(t, offset_s);
        if (step < 86400 && sod != 0)
            snprintf(label, sizeof label, "%02d:00", (int)(sod / 3600));
        else
            snprintf(label, sizeof label, "%02d-%02d", (int)d.month, (int)d.day);
        svg_text(h, x, f->top + f->height + 16, 11, SVG_MIDDLE, "#444", label);
    }
}

static double interval_kw(const struct report_interval *iv)
{
    return (double)iv->kwh_micro / 1e6 * 3600.0 / (double)(iv->end_s - iv->start_s);
}

static void load_chart(struct html *h, const struct report_load *ld)
{
    html_raw(h, "<figure class=\"chart\"><figcaption>");
    html_text(h, ld->cluster);
    html_raw(h, "</figcaption>\n");
    if (!ld->n_intervals) {
        html_raw(h, "<p>本月无计量数据。 <span class=\"en\">No intervals in this "
                    "month.</span></p></figure>\n");
        return;
    }
    int32_t off = ld->utc_offset_s;
    int64_t from = civil_day_start_ts(civil_local_day(ld->intervals[0].start_s, off), off);
    int64_t last_end = ld->intervals[ld->n_intervals - 1].end_s;
    int64_t to = civil_day_start_ts(civil_local_day(last_end - 1, off) + 1, off);

    size_t n = ld->n_intervals, top = 0;
    double *xs = xcalloc(2 * n, sizeof *xs), *ys = xcalloc(2 * n, sizeof *ys);
    double max = 0;
    for (size_t i = 0; i < n; i++) {
        double kw = interval_kw(&ld->intervals[i]);
        if (kw > max) {
            max = kw;
            top = i;
        }
    }
    double line_kw = 0, threshold_kw = 0;
    bool capacity = ld->has_demand && strcmp(ld->basis, "capacity") == 0;
    if (ld->has_contract) {
        line_kw = ld->contract_micro_kw / 1e6;
        threshold_kw = line_kw * ld->contract_threshold_micro / 1e6;
    } else if (capacity) {
        line_kw = ld->billing_kw_micro / 1e6;
    }
    double y_top = max;
    if (threshold_kw > y_top)
        y_top = threshold_kw;
    if (line_kw > y_top)
        y_top = line_kw;

    struct frame f = {.left = 70, .top = 26, .width = CHART_W - 90, .height = 170};
    svg_begin(h, CHART_W, 230, "load curve");
    y_axis(h, &f, y_top * 1.08, "kW");
    time_axis(h, &f, from, to, off);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct report_interval *iv = &ld->intervals[i];
        if (i > 0 && ld->intervals[i - 1].end_s != iv->start_s)
            ys[k++] = NAN; /* a gap without rows */
        double mid = (double)(iv->start_s + iv->end_s) / 2;
        xs[k] = f.left + (mid - (double)from) / (double)(to - from) * f.width;
        ys[k++] = frame_y(&f, interval_kw(iv));
    }
    svg_path(h, xs, ys, k, "#2b5d9c", 1.5);
    char label[160], kw[48], when[32];
    if (ld->has_contract) {
        amount(ld->contract_micro_kw, 6, 0, kw, sizeof kw);
        snprintf(label, sizeof label, "合同需量 contract %s kW", kw);
        svg_line(h, f.left, frame_y(&f, line_kw), f.left + f.width, frame_y(&f, line_kw), "#7a3db8",
                 1.5, "6 4");
        svg_text(h, f.left + f.width - 4, frame_y(&f, line_kw) + 15, 12, SVG_END, "#7a3db8", label);
        if (threshold_kw > line_kw) {
            svg_line(h, f.left, frame_y(&f, threshold_kw), f.left + f.width,
                     frame_y(&f, threshold_kw), "#b8863d", 1, "2 3");
            snprintf(label, sizeof label, "%g%% 合同需量 of contract",
                     ld->contract_threshold_micro / 1e4);
            svg_text(h, f.left + f.width - 4, frame_y(&f, threshold_kw) - 4, 11, SVG_END, "#b8863d",
                     label);
        }
    } else if (capacity) {
        amount(ld->billing_kw_micro, 6, 0, kw, sizeof kw);
        snprintf(label, sizeof label, "变压器容量 transformer capacity %s kVA", kw);
        svg_line(h, f.left, frame_y(&f, line_kw), f.left + f.width, frame_y(&f, line_kw), "#7a3db8",
                 1.5, "6 4");
        svg_text(h, f.left + f.width - 4, frame_y(&f, line_kw) - 4, 12, SVG_END, "#7a3db8", label);
    }
    /* The peak the demand charge was measured on; before the month has a
     * demand row, the highest interval so far. */
    size_t peak = top;
    double peak_kw = max;
    if (ld->has_demand && ld->max_start_s != INT64_MIN) {
        for (size_t i = 0; i < n; i++)
            if (ld->intervals[i].start_s == ld->max_start_s)
                peak = i;
        peak_kw = ld->max_kw_micro / 1e6;
    }
    const struct report_interval *pv = &ld->intervals[peak];
    double px = f.left + ((double)(pv->start_s + pv->end_s) / 2 - (double)from) /
                             (double)(to - from) * f.width;
    double py = frame_y(&f, peak_kw);
    svg_circle(h, px, py, 4.5, "#d2452c");
    int64_t peak_micro_kw = ld->has_demand ? ld->max_kw_micro
                                           : decimal_div_half_even((__int128)pv->kwh_micro * 3600,
                                                                   pv->end_s - pv->start_s);
    amount(peak_micro_kw, 6, 1, kw, sizeof kw);
    snprintf(label, sizeof label, "%s %s kW, %s", ld->has_demand ? "最大需量 peak" : "最高 highest",
             kw, local_time(pv->start_s, off, when, sizeof when));
    svg_text(h, px + (px > f.left + f.width * 0.7 ? -8 : 8), py - 8 < f.top + 10 ? py + 16 : py - 8,
             12, px > f.left + f.width * 0.7 ? SVG_END : SVG_START, "#d2452c", label);
    svg_end(h);
    free(xs);
    free(ys);
    html_raw(h, "</figure>\n");
}

static void demand_table(struct html *h, const struct report_model *m)
{
    html_raw(h, "<table>\n<thead><tr><th>集群 <span class=\"en\">Cluster</span></th>"
                "<th>计费方式 <span class=\"en\">Basis</span></th>"
                "<th class=\"n\">最大需量 kW <span class=\"en\">Peak</span></th>"
                "<th>时间 <span class=\"en\">At</span></th>"
                "<th class=\"n\">计费需量 <span class=\"en\">Billed kW / kVA</span></th>"
                "</tr></thead>\n<tbody>\n");
    char when[32];
    for (size_t i = 0; i < m->n_loads; i++) {
        const struct report_load *ld = &m->loads[i];
        html_raw(h, "<tr><td>");
        html_text(h, ld->cluster);
        html_raw(h, "</td>");
        if (!ld->has_demand) {
            html_raw(h, "<td colspan=\"4\">月未结，尚无基本电费 <span class=\"en\">month not "
                        "closed: no demand charge yet</span></td></tr>\n");
            continue;
        }
        html_raw(h, "<td>");
        html_text(h, ld->basis);
        html_raw(h, "</td>");
        money_cell(h, ld->max_kw_micro, 6, 3, NULL);
        html_printf(h, "<td>%s</td>",
                    ld->max_start_s == INT64_MIN
                        ? ""
                        : local_time(ld->max_start_s, ld->utc_offset_s, when, sizeof when));
        money_cell(h, ld->billing_kw_micro, 6, 3, NULL);
        html_raw(h, "</tr>\n");
    }
    html_raw(h, "</tbody>\n</table>\n");
}

static void subsidy_chart(struct html *h, const struct report_model *m)
{
    if (!m->n_programmes)
        return;
    heading(h, "h3", "补贴与年度上限", "Subsidy paid against the yearly cap");
    double row = 56, height = 40 + row * (double)m->n_programmes;
    struct frame f = {.left = 20, .top = 30, .width = CHART_W - 40, .height = height - 40};
    svg_begin(h, CHART_W, height, "subsidy paid against the yearly cap");
    svg_rect(h, f.left, 8, 12, 12, "#9fc5a0");
    svg_text(h, f.left + 16, 18, 12, SVG_START, "#333", "本年此前 earlier this year");
    svg_rect(h, f.left + 210, 8, 12, 12, "#2f8f4e");
    svg_text(h, f.left + 226, 18, 12, SVG_START, "#333", "本月 this month");
    svg_rect(h, f.left + 370, 8, 12, 12, "#e4e4e4");
    svg_text(h, f.left + 386, 18, 12, SVG_START, "#333", "剩余额度 cap left");
    char label[200], a[48], b[48];
    for (size_t i = 0; i < m->n_programmes; i++) {
        const struct report_programme *g = &m->programmes[i];
        double y = f.top + row * (double)i + 22;
        double before = (double)(g->year_to_date_fen - g->month_fen) / 100;
        double month = (double)g->month_fen / 100;
        double left =
            g->has_cap && g->cap_remaining_fen > 0 ? (double)g->cap_remaining_fen / 100 : 0;
        double whole = before + month + left;
        if (before < 0)
            before = 0;
        if (whole <= 0)
            whole = 1;
        if (g->has_cap)
            snprintf(label, sizeof label, "%s: %s / %s CNY", g->programme,
                     amount(g->year_to_date_fen, 2, 2, a, sizeof a),
                     amount(g->cap_cny4, 4, 2, b, sizeof b));
        else
            snprintf(label, sizeof label, "%s: %s CNY (无上限 no yearly cap)", g->programme,
                     amount(g->year_to_date_fen, 2, 2, a, sizeof a));
        svg_text(h, f.left, y - 6, 13, SVG_START, "#222", label);
        double x = f.left;
        svg_rect(h, x, y, f.width, 20, g->has_cap ? "#e4e4e4" : "#f6f6f6");
        svg_rect(h, x, y, before / whole * f.width, 20, "#9fc5a0");
        x += before / whole * f.width;
        svg_rect(h, x, y, month / whole * f.width, 20, "#2f8f4e");
    }
    svg_end(h);
}

/* ------------------------------------------------------------------ */
/* Versions, adjustments, method                                       */

static void versions_table(struct html *h, const struct report_model *m)
{
    heading(h, "h3", "电价版本", "Tariff versions that priced the month");
    if (!m->n_versions) {
        html_raw(h, "<p>—</p>\n");
        return;
    }
    html_raw(h, "<table>\n<thead><tr><th>版本 <span class=\"en\">Version</span></th>"
                "<th class=\"n\">电量行 <span class=\"en\">Interval rows</span></th>"
                "<th class=\"n\">需量行 <span class=\"en\">Demand rows</span></th>"
                "<th>起 <span class=\"en\">From</span></th><th>止 <span "
                "class=\"en\">Until</span></th></tr></thead>\n<tbody>\n");
    char a[32], b[32];
    for (size_t i = 0; i < m->n_versions; i++) {
        const struct report_version *v = &m->versions[i];
        html_raw(h, "<tr><td class=\"mono\">");
        html_text(h, v->label);
        html_printf(h, "</td><td class=\"n\">%lld</td><td class=\"n\">%lld</td>",
                    (long long)v->billing_rows, (long long)v->demand_rows);
        if (v->first_start_s == INT64_MIN)
            html_raw(h, "<td></td><td></td></tr>\n");
        else
            html_printf(h, "<td>%s</td><td>%s</td></tr>\n",
                        local_time(v->first_start_s, v->utc_offset_s, a, sizeof a),
                        local_time(v->last_end_s, v->utc_offset_s, b, sizeof b));
    }
    html_raw(h, "</tbody>\n</table>\n");
}

static void adjustments_note(struct html *h, const struct report_model *m)
{
    heading(h, "h3", "月结后调整", "Adjustments after the month ended");
    const struct report_adjustments *a = &m->adjustments;
    int64_t n = a->billing_rows + a->demand_rows;
    char kwh[48], net[48], when[32], off[16];
    html_printf(h, "<p id=\"adjustments\" data-rows=\"%lld\">", (long long)n);
    if (n == 0) {
        html_raw(h, "月末之后没有调整行。 <span class=\"en\">No adjustment row was written after "
                    "the month ended.</span></p>\n");
        return;
    }
    html_printf(h,
                "月末之后写入 %lld 条调整行（电量行 %lld，需量行 %lld），电量变化 %s kWh，"
                "净额变化 %s 元，最近一条于 %s（%s）。 <span class=\"en\">%lld adjustment rows "
                "(%lld interval, %lld demand) were written after the month ended, changing "
                "energy by %s kWh and the net amount by %s CNY; the latest at %s. They are "
                "included in every figure above.</span></p>\n",
                (long long)n, (long long)a->billing_rows, (long long)a->demand_rows,
                amount(a->kwh_micro, 6, 3, kwh, sizeof kwh),
                amount(a->net_cny4, 4, 2, net, sizeof net),
                local_time(a->latest_s, m->utc_offset_s, when, sizeof when),
                offset_name(m->utc_offset_s, off, sizeof off), (long long)n,
                (long long)a->billing_rows, (long long)a->demand_rows, kwh, net, when);
}

static void method_note(struct html *h)
{
    heading(h, "h2", "计算方法", "How this statement was computed");
    html_raw(
        h,
        "<div class=\"method\">\n"
        "<p><b>电量 Energy.</b> 功率读数按计费时段（默认 15 "
        "分钟）积分为电量，每行电量按银行家舍入保留 6 "
        "位小数，按该时段的峰谷电价计价。 <span class=\"en\">Power readings are integrated into "
        "energy per billing interval (trapezoids between samples at most max_gap apart; "
        "counters by their differences). Each interval's kWh is rounded half-even to 6 "
        "decimals and priced at the time-of-use price of its period; the energy charge and "
        "the government-fund surcharge are each rounded half-even to 0.0001 CNY per "
        "interval. A late sample adds an adjustment row carrying the difference.</span></p>\n"
        "<p><b>基本电费 Demand.</b> 最大需量为当月最大的计费时段平均功率（各电表相加）。 "
        "<span class=\"en\">The month's maximum demand is its largest interval average "
        "(kWh ÷ interval hours, meters summed). The charge follows the tariff's basis: that "
        "maximum (max_demand), the transformer capacity in kVA (capacity), or the contracted "
        "demand with the part above its threshold (105 % by default) counted double "
        "(contract); a month that reaches the load-factor threshold pays the reduced "
        "fraction. It is the full monthly charge however much of the month has data.</span></p>\n"
        "<p><b>补贴 Subsidy.</b> 补贴项目按配置顺序叠加，政府性基金及附加不予补贴。 <span "
        "class=\"en\">Each eligible programme, in configuration order, pays its rate (times "
        "the domestic share for pro_rata programmes) of the energy charge, and of the demand "
        "charge when its basis is energy+demand, rounded half-even to 0.0001 CNY and cut to "
        "what is left of max_subsidy and of the programme's yearly cap for the tenant. The "
        "surcharge is never subsidised.</span></p>\n"
        "<p><b>合计 Totals.</b> 各集群金额为账本视图 monthly_statements 的数值。 <span "
        "class=\"en\">Each cluster's line is the ledger's monthly_statements view: the "
        "4-decimal amounts of every revision summed, then rounded half-even to 0.01 CNY, "
        "each column on its own (so net may differ from its parts by a fen). The total is "
        "the sum of the lines shown. Programme figures come from subsidy_by_programme and "
        "subsidy_lines, rounded the same way.</span></p>\n"
        "<p><b>算力成本 Cost per unit of compute.</b> 当月净额除以额定算力（PFLOP·时），仅供参考，"
        "不计入金额。 <span class=\"en\">The last column is the month's net (the 4-decimal "
        "amounts of every revision summed, before rounding to the fen) over its hours of "
        "rated compute: the pflops of the inventory in force at the start of each interval "
        "that has a row, times the interval's hours. It is rounded half-even to 4 decimals, "
        "as tariffd price shows it, and never enters money; the demand charge is a whole "
        "month's, so a month with data for part of it overstates the cost. It is blank (—) "
        "where a chip in force has no pflops rating or the cluster is no longer in the "
        "configuration; the total is the total net over the total hours, shown when every "
        "line has a figure.</span></p>\n"
        "</div>\n");
}

/* ------------------------------------------------------------------ */

static const char style[] =
    "<style>\n"
    "@page { size: A4; margin: 14mm 12mm; }\n"
    "body { font-family: \"Noto Sans CJK SC\", \"WenQuanYi Micro Hei\", \"Microsoft YaHei\", "
    "\"PingFang SC\", sans-serif; color: #222; font-size: 14px; line-height: 1.4;"
    " max-width: 1060px; margin: 24px auto; padding: 0 28px; }\n"
    "h1 { font-size: 26px; margin: 0 0 4px; }\n"
    "h2 { font-size: 19px; margin: 26px 0 8px; border-bottom: 2px solid #2b5d9c;"
    " padding-bottom: 3px; }\n"
    "h3 { font-size: 16px; margin: 18px 0 6px; }\n"
    ".en { color: #555; font-weight: normal; }\n"
    "th .en, td .en { font-size: 90%; }\n"
    ".meta { color: #444; margin: 2px 0; }\n"
    ".notice { border: 2px solid #d2452c; padding: 8px 12px; margin: 14px 0; }\n"
    "table { border-collapse: collapse; width: 100%; margin: 4px 0 10px; }\n"
    "table.narrow { width: auto; min-width: 50%; }\n"
    "th { text-align: left; font-size: 13px; background: #eef2f7; }\n"
    "th, td { padding: 4px 8px; border-bottom: 1px solid #d8dde3; vertical-align: bottom; }\n"
    ".n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }\n"
    "tr.total td { font-weight: bold; border-top: 2px solid #333; border-bottom: 2px solid #333; "
    "}\n"
    "tr.programme td { font-weight: bold; }\n"
    "tr.sub td { color: #444; }\n"
    ".mono { font-family: monospace; }\n"
    ".swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }\n"
    "figure { margin: 6px 0 12px; }\n"
    "figcaption { font-weight: bold; margin-bottom: 2px; }\n"
    "svg { width: 100%; height: auto; display: block; }\n"
    ".method p { margin: 6px 0; }\n"
    "section, figure, table { break-inside: avoid; }\n"
    "@media print {\n"
    "  body { max-width: none; margin: 0; padding: 0; font-size: 9.5pt; }\n"
    "  h2 { break-after: avoid; } h3 { break-after: avoid; }\n"
    "  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }\n"
    "}\n"
    "</style>\n";

void report_page(struct html *h, const struct report_model *m)
{
    char when[32], off[16];
    html_raw(h, "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n");
    html_raw(h, "<title>月度电费账单 Monthly statement ");
    html_text(h, m->tenant);
    html_printf(h, " %04d-%02d</title>\n", (int)m->year, (int)m->month);
    html_raw(h, style);
    html_raw(h, "</head>\n<body>\n");
    html_printf(h, "<h1>月度电费账单 <span class=\"en\">Monthly statement</span></h1>\n");
    html_raw(h, "<p class=\"meta\"><b>");
    html_text(h, m->tenant_name);
    html_raw(h, "</b>");
    if (strcmp(m->tenant_name, m->tenant) != 0) {
        html_raw(h, " (");
        html_text(h, m->tenant);
        html_raw(h, ")");
    }
    html_printf(h, " · %d年%d月 <span class=\"en\">%s %d</span> (%s)</p>\n", (int)m->year,
                (int)m->month, month_en[m->month - 1], (int)m->year,
                offset_name(m->utc_offset_s, off, sizeof off));
    html_printf(h,
                "<p class=\"meta\">生成于 <span class=\"en\">generated</span> %s %s · "
                "<span class=\"en\">ledger up to billing_rows id %lld, demand_charges id "
                "%lld</span> · 金额单位：元 <span class=\"en\">amounts in CNY</span></p>\n",
                local_time(m->generated_s, m->utc_offset_s, when, sizeof when), off,
                (long long)m->max_billing_id, (long long)m->max_demand_id);
    if (!m->n_clusters)
        html_printf(h,
                    "<p class=\"notice\" id=\"no-rows\">本月账本中没有该租户的记录。 <span "
                    "class=\"en\">The ledger has no rows for this tenant in %s %d: nothing "
                    "is billed.</span></p>\n",
                    month_en[m->month - 1], (int)m->year);
    statement_table(h, m);
    if (m->n_clusters) {
        period_table(h, m);
        subsidy_table(h, m);
        heading(h, "h2", "图表", "Charts");
        daily_chart(h, m);
        subsidy_chart(h, m);
        heading(h, "h3", "负荷曲线（计费时段平均功率）",
                "Load curve: average kW of each billing interval");
        demand_table(h, m);
        for (size_t i = 0; i < m->n_loads; i++)
            load_chart(h, &m->loads[i]);
        heading(h, "h2", "版本与更正", "Versions and corrections");
        versions_table(h, m);
        adjustments_note(h, m);
    }
    method_note(h);
    html_raw(h, "</body>\n</html>\n");
}

void report_model_free(struct report_model *m)
{
    for (size_t i = 0; i < m->n_clusters; i++) {
        free(m->clusters[i].cluster);
        free(m->clusters[i].province);
    }
    free(m->clusters);
    free(m->day_kwh_micro);
    for (size_t i = 0; i < m->n_programmes; i++) {
        for (size_t k = 0; k < m->programmes[i].n_clusters; k++)
            free(m->programmes[i].clusters[k].cluster);
        free(m->programmes[i].clusters);
        free(m->programmes[i].programme);
    }
    free(m->programmes);
    for (size_t i = 0; i < m->n_loads; i++) {
        free(m->loads[i].cluster);
        free(m->loads[i].intervals);
        free(m->loads[i].basis);
    }
    free(m->loads);
    for (size_t i = 0; i < m->n_versions; i++)
        free(m->versions[i].label);
    free(m->versions);
    *m = (struct report_model){0};
}
