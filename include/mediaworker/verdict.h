/*
 * The delivery verdict: what happens to one message, decided in one place.
 *
 * The function is pure (no I/O, no clock, no globals), so a unit test walks its whole table. The slot
 * gathers the facts and asks after each step (received, job ran, report answered); the broker thread only
 * carries the verdict out. Whether an error is worth a retry is the error table's class (error.h), not
 * decided here again.
 *
 * The rules, in order:
 *   1. an invalid message is dead-lettered, never retried;
 *   2. a shutdown that stopped the job or its report gives the message back unchanged (not an attempt);
 *   3. a message whose complete result an earlier attempt committed is reported again, never re-run;
 *      otherwise the job runs;
 *   4. a job process killed from outside (SIGKILL the worker did not send: the kernel's OOM killer, an
 *      operator) runs the job once more in a fresh process; killed again, it counts as the input's fault;
 *   5. a transient failure goes to the next retry tier without a report; with no tier left it is
 *      reported as failed and dead-lettered;
 *   6. every other outcome is reported; the Data Service's answer decides:
 *        accepted, or the user is gone: ack (a report of a bad message still dead-letters it);
 *        refused (400, 413, 422, other 4xx): dead-lettered with the answer, for a person;
 *        unavailable (3xx, 401/403, 408, 409, 425, 429, 5xx, no answer, not HTTP): the next retry tier,
 *        or the one whose delay covers the answer's Retry-After; with no tier left, dead-lettered.
 */
#ifndef MEDIAWORKER_VERDICT_H
#define MEDIAWORKER_VERDICT_H

#include <stdint.h>

enum mw_report_outcome {
    MW_REPORT_NOT_SENT,       /* no report for this attempt yet */
    MW_REPORT_ACCEPTED,       /* 2xx */
    MW_REPORT_USER_GONE,      /* 404 or 410: the user no longer exists */
    MW_REPORT_REFUSED,        /* 400, 413, 422 and the other 4xx: this report will never be accepted */
    MW_REPORT_UNAVAILABLE,    /* may heal: see rule 6 */
};

struct mw_delivery_facts {
    int invalid;              /* the message or its properties were refused */
    int stopped;              /* the shutdown stopped the job or its report before either finished */
    int committed;            /* an earlier attempt's complete result was found: report it, do not run */
    int runs;                 /* times the job ran for this delivery */
    int job_error;            /* the last run's error, 0 when it succeeded (or the committed result's) */
    int attempts;             /* failed attempts before this delivery, as the worker's own header says */
    int tiers;                /* configured retry tiers */
    const int *delays_s;      /* their delays, tiers entries */
    enum mw_report_outcome report;
    int64_t retry_after_ms;   /* Retry-After of the Data Service's last answer, -1 when none */
};

enum mw_action {
    MW_ACTION_RUN,            /* run the job, then decide again */
    MW_ACTION_RUN_AGAIN,      /* run it once more in a fresh job process, then decide again */
    MW_ACTION_REPORT,         /* send the report, then decide again with its outcome */
    MW_ACTION_ACK,
    MW_ACTION_REQUEUE,        /* back to the queue as it is */
    MW_ACTION_RETRY,          /* a copy to retry tier `tier`, then the original is acked */
    MW_ACTION_DEAD,           /* a copy to the dead-letter queue, then the original is acked */
};

struct mw_verdict {
    enum mw_action action;
    int tier;                 /* MW_ACTION_RETRY: 1..tiers */
    int attempts;             /* MW_ACTION_RETRY, MW_ACTION_DEAD: failed attempts the copy carries */
    const char *rule;         /* the rule that decided, a fixed phrase for log lines */
};

struct mw_verdict mw_verdict_decide(const struct mw_delivery_facts *facts);

/* "run", "report", "ack", ... for log lines and tests. */
const char *mw_action_name(enum mw_action action);

#endif
