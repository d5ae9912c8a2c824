#include <stddef.h>

#include "mediaworker/error.h"
#include "mediaworker/verdict.h"

static struct mw_verdict verdict(enum mw_action action, const char *rule)
{
    return (struct mw_verdict){.action = action, .rule = rule};
}

static struct mw_verdict dead(const struct mw_delivery_facts *f, const char *rule)
{
    return (struct mw_verdict){.action = MW_ACTION_DEAD, .attempts = f->attempts + 1, .rule = rule};
}

/*
 * The next tier, or a later one when the Data Service asked for a longer wait than the next tier holds a
 * message: waiting less would only meet the same answer. Tiers skipped count as used, so a long
 * Retry-After cannot stretch the retries past the last tier. 0 when no tier is left.
 */
static int pick_tier(const struct mw_delivery_facts *f, int64_t wait_ms)
{
    int tier = f->attempts + 1;

    if (tier > f->tiers)
        return 0;
    while (wait_ms > 0 && tier < f->tiers && (int64_t)f->delays_s[tier - 1] * 1000 < wait_ms)
        tier++;
    return tier;
}

static struct mw_verdict retry(const struct mw_delivery_facts *f, int64_t wait_ms, const char *rule,
                               const char *exhausted_rule)
{
    int tier = pick_tier(f, wait_ms);

    if (!tier)
        return dead(f, exhausted_rule);
    return (struct mw_verdict){.action = MW_ACTION_RETRY, .tier = tier, .attempts = tier, .rule = rule};
}

static struct mw_verdict after_job(const struct mw_delivery_facts *f)
{
    if (f->job_error == MW_ERR_JOB_KILLED && f->runs == 1)
        return verdict(MW_ACTION_RUN_AGAIN, "job process killed from outside: once more in a fresh process");
    if (f->job_error < 0 && mw_error_class(f->job_error) == MW_ERROR_CLASS_TRANSIENT && pick_tier(f, 0))
        return retry(f, 0, "transient failure: to the next retry tier", NULL);
    return verdict(MW_ACTION_REPORT, f->job_error < 0 ? "failed: report it" : "processed: report it");
}

static struct mw_verdict after_report(const struct mw_delivery_facts *f)
{
    switch (f->report) {
    case MW_REPORT_ACCEPTED:
    case MW_REPORT_USER_GONE:
        if (f->job_error >= 0)
            return verdict(MW_ACTION_ACK, "processed and reported");
        switch (mw_error_class(f->job_error)) {
        case MW_ERROR_CLASS_MESSAGE:
            return dead(f, "the message is wrong: reported, kept for a person");
        case MW_ERROR_CLASS_TRANSIENT:
            return dead(f, "transient failure, retries used up: reported");
        case MW_ERROR_CLASS_INPUT:
            break;
        }
        return verdict(MW_ACTION_ACK, "the input failed: reported");
    case MW_REPORT_REFUSED:
        return dead(f, "the data service refused the report");
    case MW_REPORT_UNAVAILABLE:
        return retry(f, f->retry_after_ms, "data service unavailable: to a retry tier",
                     "data service unavailable, retries used up");
    case MW_REPORT_NOT_SENT:
        break;
    }
    return verdict(MW_ACTION_REPORT, "not reported yet: report it");
}

struct mw_verdict mw_verdict_decide(const struct mw_delivery_facts *f)
{
    int finished = f->report == MW_REPORT_ACCEPTED || f->report == MW_REPORT_USER_GONE ||
                   f->report == MW_REPORT_REFUSED;

    if (f->invalid)
        return dead(f, "invalid message");
    if (f->stopped && !finished)
        return verdict(MW_ACTION_REQUEUE, "stopped by the shutdown: back to the queue");
    if (f->report != MW_REPORT_NOT_SENT)
        return after_report(f);
    if (f->committed)
        return verdict(MW_ACTION_REPORT, "an earlier attempt's result is complete: report it again");
    if (f->runs == 0)
        return verdict(MW_ACTION_RUN, "run the job");
    return after_job(f);
}

const char *mw_action_name(enum mw_action action)
{
    switch (action) {
    case MW_ACTION_RUN:       return "run";
    case MW_ACTION_RUN_AGAIN: return "run again";
    case MW_ACTION_REPORT:    return "report";
    case MW_ACTION_ACK:       return "ack";
    case MW_ACTION_REQUEUE:   return "requeue";
    case MW_ACTION_RETRY:     return "retry";
    case MW_ACTION_DEAD:      return "dead-letter";
    }
    return "?";
}
