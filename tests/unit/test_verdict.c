/*
 * The delivery verdict: the rules row by row, then every combination of the facts against the invariants
 * that keep messages from being lost, re-run or retried without end.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "mediaworker/error.h"
#include "mediaworker/verdict.h"

static const int delays_s[] = {10, 60, 300};

#define TIERS 3

struct row {
    const char *what;
    struct mw_delivery_facts facts;
    enum mw_action action;
    int tier;
    int attempts;
};

/* Facts of a delivery on its way; tiers, delays and an absent Retry-After are filled in by check_row. */
#define FACTS(...) {__VA_ARGS__}

static void check_row(const struct row *r)
{
    struct mw_delivery_facts facts = r->facts;
    struct mw_verdict v;

    facts.tiers = TIERS;
    facts.delays_s = delays_s;
    if (!facts.retry_after_ms)
        facts.retry_after_ms = -1;
    v = mw_verdict_decide(&facts);
    if (v.action != r->action || (r->action == MW_ACTION_RETRY && v.tier != r->tier) ||
        ((r->action == MW_ACTION_RETRY || r->action == MW_ACTION_DEAD) && v.attempts != r->attempts))
        fail_msg("%s: got %s tier %d attempts %d (%s), expected %s tier %d attempts %d", r->what,
                 mw_action_name(v.action), v.tier, v.attempts, v.rule, mw_action_name(r->action), r->tier,
                 r->attempts);
    assert_non_null(v.rule);
}

static void rules_row_by_row(void **state)
{
    static const struct row rows[] = {
        {"invalid message", FACTS(.invalid = 1), MW_ACTION_DEAD, 0, 1},
        {"invalid, even while stopping", FACTS(.invalid = 1, .stopped = 1), MW_ACTION_DEAD, 0, 1},
        {"new delivery", FACTS(.runs = 0), MW_ACTION_RUN, 0, 0},
        {"stopped before the job started", FACTS(.stopped = 1), MW_ACTION_REQUEUE, 0, 0},
        {"stopped during the job", FACTS(.stopped = 1, .runs = 1, .job_error = MW_ERR_JOB_CRASHED),
         MW_ACTION_REQUEUE, 0, 0},
        {"committed result", FACTS(.committed = 1), MW_ACTION_REPORT, 0, 0},
        {"committed result reported", FACTS(.committed = 1, .report = MW_REPORT_ACCEPTED), MW_ACTION_ACK, 0, 0},
        {"processed", FACTS(.runs = 1), MW_ACTION_REPORT, 0, 0},
        {"processed, accepted", FACTS(.runs = 1, .report = MW_REPORT_ACCEPTED), MW_ACTION_ACK, 0, 0},
        {"processed, user gone", FACTS(.runs = 1, .report = MW_REPORT_USER_GONE), MW_ACTION_ACK, 0, 0},
        {"processed, refused", FACTS(.runs = 1, .report = MW_REPORT_REFUSED), MW_ACTION_DEAD, 0, 1},
        {"processed, unavailable", FACTS(.runs = 1, .report = MW_REPORT_UNAVAILABLE), MW_ACTION_RETRY, 1, 1},
        {"unavailable on the second attempt", FACTS(.runs = 1, .attempts = 1, .report = MW_REPORT_UNAVAILABLE),
         MW_ACTION_RETRY, 2, 2},
        {"unavailable after the last tier", FACTS(.runs = 1, .attempts = 3, .report = MW_REPORT_UNAVAILABLE),
         MW_ACTION_DEAD, 0, 4},
        {"Retry-After within the next tier",
         FACTS(.runs = 1, .report = MW_REPORT_UNAVAILABLE, .retry_after_ms = 9000), MW_ACTION_RETRY, 1, 1},
        {"Retry-After 59 s skips to the 60 s tier",
         FACTS(.runs = 1, .report = MW_REPORT_UNAVAILABLE, .retry_after_ms = 59000), MW_ACTION_RETRY, 2, 2},
        {"Retry-After beyond every tier takes the last",
         FACTS(.runs = 1, .report = MW_REPORT_UNAVAILABLE, .retry_after_ms = 86400000), MW_ACTION_RETRY, 3, 3},
        {"unavailable while stopping", FACTS(.runs = 1, .stopped = 1, .report = MW_REPORT_UNAVAILABLE),
         MW_ACTION_REQUEUE, 0, 0},
        {"accepted while stopping", FACTS(.runs = 1, .stopped = 1, .report = MW_REPORT_ACCEPTED), MW_ACTION_ACK,
         0, 0},
        {"bad input", FACTS(.runs = 1, .job_error = AVERROR_INVALIDDATA), MW_ACTION_REPORT, 0, 0},
        {"bad input, reported", FACTS(.runs = 1, .job_error = AVERROR_INVALIDDATA, .report = MW_REPORT_ACCEPTED),
         MW_ACTION_ACK, 0, 0},
        {"crash, reported", FACTS(.runs = 1, .job_error = MW_ERR_JOB_CRASHED, .report = MW_REPORT_ACCEPTED),
         MW_ACTION_ACK, 0, 0},
        {"path refused, reported", FACTS(.runs = 1, .job_error = MW_ERR_PATH_REFUSED, .report = MW_REPORT_ACCEPTED),
         MW_ACTION_DEAD, 0, 1},
        {"disk full", FACTS(.runs = 1, .job_error = AVERROR(ENOSPC)), MW_ACTION_RETRY, 1, 1},
        {"disk full, third attempt", FACTS(.runs = 1, .attempts = 2, .job_error = AVERROR(ENOSPC)), MW_ACTION_RETRY,
         3, 3},
        {"disk full, tiers used up", FACTS(.runs = 1, .attempts = 3, .job_error = AVERROR(ENOSPC)),
         MW_ACTION_REPORT, 0, 0},
        {"disk full, tiers used up, reported",
         FACTS(.runs = 1, .attempts = 3, .job_error = AVERROR(ENOSPC), .report = MW_REPORT_ACCEPTED),
         MW_ACTION_DEAD, 0, 4},
        {"killed from outside", FACTS(.runs = 1, .job_error = MW_ERR_JOB_KILLED), MW_ACTION_RUN_AGAIN, 0, 0},
        {"killed from outside twice", FACTS(.runs = 2, .job_error = MW_ERR_JOB_KILLED), MW_ACTION_REPORT, 0, 0},
        {"killed twice, reported", FACTS(.runs = 2, .job_error = MW_ERR_JOB_KILLED, .report = MW_REPORT_ACCEPTED),
         MW_ACTION_ACK, 0, 0},
        {"killed, then processed", FACTS(.runs = 2), MW_ACTION_REPORT, 0, 0},
    };

    struct mw_delivery_facts no_tiers = {.runs = 1, .job_error = MW_ERR_JOB_LOST, .retry_after_ms = -1};

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        check_row(&rows[i]);
    /* With MW_RETRY_DELAYS empty a transient failure is reported at once, then dead-lettered. */
    assert_int_equal(mw_verdict_decide(&no_tiers).action, MW_ACTION_REPORT);
    no_tiers.report = MW_REPORT_ACCEPTED;
    assert_int_equal(mw_verdict_decide(&no_tiers).action, MW_ACTION_DEAD);
    no_tiers.report = MW_REPORT_UNAVAILABLE;
    assert_int_equal(mw_verdict_decide(&no_tiers).action, MW_ACTION_DEAD);
}

/* The invariants of one verdict, whatever the facts. */
static void check_invariants(const struct mw_delivery_facts *f, const struct mw_verdict *v, const char *where)
{
    int answered = f->report != MW_REPORT_NOT_SENT;
    int reported = f->report == MW_REPORT_ACCEPTED || f->report == MW_REPORT_USER_GONE;

    if (f->invalid && v->action != MW_ACTION_DEAD)
        fail_msg("%s: an invalid message must be dead-lettered", where);
    if ((v->action == MW_ACTION_RUN || v->action == MW_ACTION_RUN_AGAIN) && (answered || f->committed))
        fail_msg("%s: a reported or committed job must never run again", where);
    if (v->action == MW_ACTION_RUN && f->runs)
        fail_msg("%s: a job that ran runs again only through RUN_AGAIN", where);
    if (v->action == MW_ACTION_RUN_AGAIN && !(f->runs == 1 && f->job_error == MW_ERR_JOB_KILLED))
        fail_msg("%s: only a first kill from outside runs again", where);
    if (v->action == MW_ACTION_REPORT && answered)
        fail_msg("%s: a report is sent once per attempt", where);
    if (v->action == MW_ACTION_ACK && !reported)
        fail_msg("%s: acked without the Data Service having the result", where);
    if (v->action == MW_ACTION_ACK && f->job_error < 0 && mw_error_class(f->job_error) != MW_ERROR_CLASS_INPUT)
        fail_msg("%s: a message or transient failure is kept in the DLQ, not acked", where);
    if (v->action == MW_ACTION_REQUEUE && !f->stopped)
        fail_msg("%s: only a shutdown gives a message back unchanged", where);
    if (v->action == MW_ACTION_RETRY && (v->tier < 1 || v->tier > f->tiers || v->attempts != v->tier ||
                                         v->attempts <= f->attempts))
        fail_msg("%s: retry tier %d attempts %d out of range", where, v->tier, v->attempts);
    if (v->action == MW_ACTION_DEAD && v->attempts != f->attempts + 1)
        fail_msg("%s: a dead letter carries one more attempt", where);
    if (v->action == MW_ACTION_DEAD && !f->invalid && f->report == MW_REPORT_NOT_SENT)
        fail_msg("%s: a valid message is dead-lettered only after its report", where);
}

static void every_combination_keeps_the_invariants(void **state)
{
    static const int errors[] = {0, AVERROR_INVALIDDATA, MW_ERR_INVALID_MESSAGE, MW_ERR_JOB_KILLED,
                                 MW_ERR_JOB_CRASHED, MW_ERR_JOB_LOST, AVERROR(ENOSPC)};
    static const int64_t waits_ms[] = {-1, 0, 9000, 59000, 999999999};
    size_t combinations = 0;

    (void)state;
    for (int bits = 0; bits < 8; bits++)
        for (int runs = 0; runs <= 2; runs++)
            for (size_t e = 0; e < sizeof(errors) / sizeof(errors[0]); e++)
                for (int tiers = 0; tiers <= TIERS; tiers++)
                    for (int attempts = 0; attempts <= TIERS + 1; attempts++)
                        for (int report = MW_REPORT_NOT_SENT; report <= MW_REPORT_UNAVAILABLE; report++)
                            for (size_t w = 0; w < sizeof(waits_ms) / sizeof(waits_ms[0]); w++) {
                                struct mw_delivery_facts f = {
                                    .invalid = bits & 1, .stopped = (bits >> 1) & 1, .committed = (bits >> 2) & 1,
                                    .runs = runs, .job_error = runs ? errors[e] : 0, .attempts = attempts,
                                    .tiers = tiers, .delays_s = delays_s, .report = report,
                                    .retry_after_ms = waits_ms[w],
                                };
                                struct mw_verdict v = mw_verdict_decide(&f);
                                char where[160];

                                snprintf(where, sizeof(where),
                                         "bits %d runs %d error %s tiers %d attempts %d report %d wait %lld", bits,
                                         runs, f.job_error ? mw_error_code_name(f.job_error) : "none", tiers,
                                         attempts, report, (long long)waits_ms[w]);
                                check_invariants(&f, &v, where);
                                combinations++;
                            }
    assert_true(combinations > 10000);
}

/* Following the verdicts from a fresh delivery always ends in a settlement, in a few steps. */
static void every_path_settles(void **state)
{
    static const enum mw_report_outcome answers[] = {MW_REPORT_ACCEPTED, MW_REPORT_USER_GONE, MW_REPORT_REFUSED,
                                                     MW_REPORT_UNAVAILABLE};
    static const int errors[] = {0, AVERROR_INVALIDDATA, MW_ERR_JOB_KILLED, AVERROR(ENOSPC)};

    (void)state;
    for (size_t a = 0; a < sizeof(answers) / sizeof(answers[0]); a++)
        for (size_t e = 0; e < sizeof(errors) / sizeof(errors[0]); e++)
            for (int attempts = 0; attempts <= TIERS; attempts++) {
                struct mw_delivery_facts f = {.attempts = attempts, .tiers = TIERS, .delays_s = delays_s,
                                              .retry_after_ms = -1};
                struct mw_verdict v;
                int steps = 0;

                for (v = mw_verdict_decide(&f);
                     v.action == MW_ACTION_RUN || v.action == MW_ACTION_RUN_AGAIN || v.action == MW_ACTION_REPORT;
                     v = mw_verdict_decide(&f)) {
                    if (v.action == MW_ACTION_REPORT) {
                        f.report = answers[a];
                    } else {
                        f.runs++;
                        f.job_error = errors[e];
                    }
                    if (++steps > 4)
                        fail_msg("answer %d error %d attempts %d: no settlement after %d steps", answers[a],
                                 errors[e], attempts, steps);
                }
                assert_true(v.action == MW_ACTION_ACK || v.action == MW_ACTION_RETRY || v.action == MW_ACTION_DEAD);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rules_row_by_row),
        cmocka_unit_test(every_combination_keeps_the_invariants),
        cmocka_unit_test(every_path_settles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
