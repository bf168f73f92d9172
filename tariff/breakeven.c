#include "breakeven.h"

void break_even_search(int64_t target_cny4, break_even_net_fn net_at, void *ctx,
                       struct break_even *out)
{
    *out = (struct break_even){.outcome = BREAK_EVEN_FAILED};
    int32_t lo = 1, hi = BREAK_EVEN_MAX_STEPS;
    int64_t net_lo, net_hi;
    out->pricings++;
    if (!net_at(ctx, hi, &net_hi))
        return;
    if (net_hi < target_cny4) {
        out->outcome = BREAK_EVEN_ALT_CHEAPER;
        out->at_cny4 = net_hi;
        return;
    }
    out->pricings++;
    if (!net_at(ctx, lo, &net_lo))
        return;
    if (net_lo >= target_cny4) {
        out->outcome = BREAK_EVEN_ALT_DEARER;
        out->at_cny4 = net_lo;
        return;
    }
    /* net(lo) < target <= net(hi) holds throughout. */
    while (hi - lo > 1) {
        int32_t mid = lo + (hi - lo) / 2;
        int64_t net;
        out->pricings++;
        if (!net_at(ctx, mid, &net))
            return;
        if (net >= target_cny4)
            hi = mid, net_hi = net;
        else
            lo = mid, net_lo = net;
    }
    out->outcome = BREAK_EVEN_FOUND;
    out->steps = hi;
    out->below_cny4 = net_lo;
    out->at_cny4 = net_hi;
}
