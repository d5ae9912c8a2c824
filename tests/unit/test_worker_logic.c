/* Pure logic of the worker: bounded queue, backoff, Retry-After, report classification, retry tiers, IPC. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/attempt.h"
#include "mediaworker/backoff.h"
#include "mediaworker/error.h"
#include "mediaworker/jobproc.h"
#include "mediaworker/queue.h"
#include "mediaworker/reporter.h"
#include "mediaworker/topology.h"

static void queue_is_fifo_and_bounded(void **state)
{
    struct mw_queue *q = NULL;
    int items[3] = {1, 2, 3};
    void *out;

    (void)state;
    assert_int_equal(mw_queue_new(&q, 2), 0);
    assert_int_equal(mw_queue_push(q, &items[0], 0), 0);
    assert_int_equal(mw_queue_push(q, &items[1], 0), 0);
    assert_int_equal(mw_queue_push(q, &items[2], 0), AVERROR(EAGAIN));
    assert_int_equal(mw_queue_push(q, &items[2], 20), AVERROR(EAGAIN));
    assert_int_equal(mw_queue_length(q), 2);
    assert_int_equal(mw_queue_pop(q, &out, 0), 0);
    assert_ptr_equal(out, &items[0]);
    assert_int_equal(mw_queue_push(q, &items[2], 0), 0);
    assert_int_equal(mw_queue_pop(q, &out, 0), 0);
    assert_ptr_equal(out, &items[1]);
    assert_int_equal(mw_queue_pop(q, &out, 0), 0);
    assert_ptr_equal(out, &items[2]);
    assert_int_equal(mw_queue_pop(q, &out, 10), AVERROR(EAGAIN));
    assert_null(out);
    mw_queue_free(&q);
    assert_null(q);
    mw_queue_free(&q);
    assert_int_equal(mw_queue_new(&q, 0), AVERROR(EINVAL));
}

static void queue_close_drains_then_eof(void **state)
{
    struct mw_queue *q = NULL;
    int item = 7;
    void *out;

    (void)state;
    assert_int_equal(mw_queue_new(&q, 4), 0);
    assert_int_equal(mw_queue_push(q, &item, 0), 0);
    mw_queue_close(q);
    assert_int_equal(mw_queue_push(q, &item, 0), AVERROR_EOF);
    assert_int_equal(mw_queue_pop(q, &out, -1), 0);
    assert_ptr_equal(out, &item);
    assert_int_equal(mw_queue_pop(q, &out, -1), AVERROR_EOF);
    mw_queue_free(&q);
}

static void *pop_one(void *arg)
{
    void *out = NULL;

    mw_queue_pop(arg, &out, -1);
    return out;
}

static void queue_wakes_a_waiting_consumer(void **state)
{
    struct mw_queue *q = NULL;
    pthread_t thread;
    int item = 3;
    void *got;

    (void)state;
    assert_int_equal(mw_queue_new(&q, 1), 0);
    assert_int_equal(pthread_create(&thread, NULL, pop_one, q), 0);
    av_usleep(20000);
    assert_int_equal(mw_queue_push(q, &item, -1), 0);
    assert_int_equal(pthread_join(thread, &got), 0);
    assert_ptr_equal(got, &item);
    mw_queue_free(&q);
}

static void backoff_grows_caps_and_jitters(void **state)
{
    (void)state;
    /* attempt n draws from [d/2, d], d = min(cap, base * 2^n) */
    assert_int_equal(mw_backoff_delay_ms(0, 500, 5000, 0), 250);
    assert_int_equal(mw_backoff_delay_ms(0, 500, 5000, 250), 500);
    assert_int_equal(mw_backoff_delay_ms(1, 500, 5000, 0), 500);
    assert_int_equal(mw_backoff_delay_ms(3, 500, 5000, 0), 2000);
    assert_int_equal(mw_backoff_delay_ms(10, 500, 5000, 0), 2500);
    assert_int_equal(mw_backoff_delay_ms(60, 500, 5000, 2500), 5000);
    assert_int_equal(mw_backoff_delay_ms(-1, 500, 5000, 0), 250);
    for (uint32_t r = 0; r < 100000; r += 997) {
        int64_t d = mw_backoff_delay_ms(2, 500, 5000, r * 2654435761u);
        assert_true(d >= 1000 && d <= 2000);
    }
}

static void retry_after_parses_seconds_and_dates(void **state)
{
    time_t now = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */

    (void)state;
    assert_int_equal(mw_reporter_parse_retry_after("1", now), 1000);
    assert_int_equal(mw_reporter_parse_retry_after(" 120 ", now), 120000);
    assert_int_equal(mw_reporter_parse_retry_after("0", now), 0);
    assert_int_equal(mw_reporter_parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now), 30000);
    assert_int_equal(mw_reporter_parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now), 0);
    assert_int_equal(mw_reporter_parse_retry_after(NULL, now), -1);
    assert_int_equal(mw_reporter_parse_retry_after("", now), -1);
    assert_int_equal(mw_reporter_parse_retry_after("soon", now), -1);
    assert_int_equal(mw_reporter_parse_retry_after("12abc", now), -1);
    assert_int_equal(mw_reporter_parse_retry_after("99999999999999999999", now), -1);
}

/* Every status class the Data Service may answer, and whether the slot tries again before a tier does. */
static void report_status_classes(void **state)
{
    static const struct {
        long status;
        enum mw_report_outcome outcome;
        int retry_in_slot;
    } table[] = {
        {200, MW_REPORT_ACCEPTED, 0},     {204, MW_REPORT_ACCEPTED, 0},     {301, MW_REPORT_UNAVAILABLE, 0},
        {302, MW_REPORT_UNAVAILABLE, 0},  {307, MW_REPORT_UNAVAILABLE, 0},  {400, MW_REPORT_REFUSED, 0},
        {401, MW_REPORT_UNAVAILABLE, 0},  {403, MW_REPORT_UNAVAILABLE, 0},  {404, MW_REPORT_USER_GONE, 0},
        {405, MW_REPORT_REFUSED, 0},      {408, MW_REPORT_UNAVAILABLE, 1},  {409, MW_REPORT_UNAVAILABLE, 1},
        {410, MW_REPORT_USER_GONE, 0},    {413, MW_REPORT_REFUSED, 0},      {422, MW_REPORT_REFUSED, 0},
        {425, MW_REPORT_UNAVAILABLE, 1},  {429, MW_REPORT_UNAVAILABLE, 1},  {500, MW_REPORT_UNAVAILABLE, 1},
        {502, MW_REPORT_UNAVAILABLE, 1},  {503, MW_REPORT_UNAVAILABLE, 1},  {504, MW_REPORT_UNAVAILABLE, 1},
        {599, MW_REPORT_UNAVAILABLE, 1},  {100, MW_REPORT_UNAVAILABLE, 1},  {999, MW_REPORT_UNAVAILABLE, 1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        int retry_in_slot = -1;
        enum mw_report_outcome outcome = mw_reporter_classify_status(table[i].status, &retry_in_slot);
        if (outcome != table[i].outcome || retry_in_slot != table[i].retry_in_slot)
            fail_msg("HTTP %ld: outcome %d (expected %d), retry in slot %d (expected %d)", table[i].status,
                     outcome, table[i].outcome, retry_in_slot, table[i].retry_in_slot);
    }
}

static void attempt_counts_are_signed(void **state)
{
    struct mw_config cfg = {.rabbitmq_url = "amqp://worker:secret@broker/", .queue = "media.process"};
    struct mw_config other = cfg;
    uint8_t key[MW_ATTEMPT_KEY_SIZE], other_key[MW_ATTEMPT_KEY_SIZE];
    const char body[] = "{\"user_id\": 1}";
    char sig[MW_ATTEMPT_SIG_SIZE];

    (void)state;
    mw_attempt_key(&cfg, key);
    snprintf(other.attempt_key, sizeof(other.attempt_key), "set by the operator");
    mw_attempt_key(&other, other_key);
    assert_memory_not_equal(key, other_key, sizeof(key));
    assert_int_equal(mw_attempt_sign(key, 2, "id-1", 4, body, sizeof(body) - 1, sig), 0);
    assert_int_equal(strlen(sig), MW_ATTEMPT_SIG_SIZE - 1);
    assert_true(mw_attempt_verify(key, 2, "id-1", 4, body, sizeof(body) - 1, sig, strlen(sig)));
    assert_false(mw_attempt_verify(key, 3, "id-1", 4, body, sizeof(body) - 1, sig, strlen(sig)));
    assert_false(mw_attempt_verify(key, 2, "id-2", 4, body, sizeof(body) - 1, sig, strlen(sig)));
    assert_false(mw_attempt_verify(key, 2, "id-1", 4, body, sizeof(body) - 2, sig, strlen(sig)));
    assert_false(mw_attempt_verify(other_key, 2, "id-1", 4, body, sizeof(body) - 1, sig, strlen(sig)));
    assert_false(mw_attempt_verify(key, 2, "id-1", 4, body, sizeof(body) - 1, sig, strlen(sig) - 1));
    sig[0] = sig[0] == '0' ? '1' : '0';
    assert_false(mw_attempt_verify(key, 2, "id-1", 4, body, sizeof(body) - 1, sig, strlen(sig)));
}

static void retry_delays_and_tiers(void **state)
{
    int delays[MW_TOPOLOGY_MAX_TIERS];
    char err[256];

    (void)state;
    assert_int_equal(mw_topology_parse_delays("10,60,300", delays, MW_TOPOLOGY_MAX_TIERS, err, sizeof(err)), 3);
    assert_int_equal(delays[0], 10);
    assert_int_equal(delays[2], 300);
    assert_int_equal(mw_topology_parse_delays(" 1 , 2", delays, MW_TOPOLOGY_MAX_TIERS, err, sizeof(err)), 2);
    assert_int_equal(mw_topology_parse_delays("", delays, MW_TOPOLOGY_MAX_TIERS, err, sizeof(err)), 0);
    assert_int_equal(mw_topology_parse_delays("1,x", delays, MW_TOPOLOGY_MAX_TIERS, err, sizeof(err)), MW_ERR_CONFIG);
    assert_non_null(strstr(err, "MW_RETRY_DELAYS"));
    assert_int_equal(mw_topology_parse_delays("0", delays, MW_TOPOLOGY_MAX_TIERS, err, sizeof(err)), MW_ERR_CONFIG);
    assert_int_equal(mw_topology_parse_delays("1;2", delays, MW_TOPOLOGY_MAX_TIERS, err, sizeof(err)), MW_ERR_CONFIG);
    assert_int_equal(mw_topology_parse_delays("1,2,3", delays, 2, err, sizeof(err)), MW_ERR_CONFIG);
    assert_int_equal(mw_topology_retry_tier(1, 3), 1);
    assert_int_equal(mw_topology_retry_tier(3, 3), 3);
    assert_int_equal(mw_topology_retry_tier(4, 3), 0);
    assert_int_equal(mw_topology_retry_tier(1, 0), 0);
    assert_int_equal(mw_topology_retry_tier(0, 3), 0);
}

static void ipc_frames_round_trip(void **state)
{
    int sv[2];
    char *data = NULL;
    size_t size = 0;
    static const char big_fill = 'z';
    char *big = av_malloc(100000);
    pid_t writer;
    int status;

    (void)state;
    assert_non_null(big);
    memset(big, big_fill, 100000);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(mw_jobproc_frame_write(sv[0], "{\"a\":1}", 7), 0);
    assert_int_equal(mw_jobproc_frame_write(sv[0], "", 0), 0);
    assert_int_equal(mw_jobproc_frame_read(sv[1], &data, &size, 0), 0);
    assert_int_equal(size, 7);
    assert_string_equal(data, "{\"a\":1}");
    av_freep(&data);
    assert_int_equal(mw_jobproc_frame_read(sv[1], &data, &size, 0), 0);
    assert_int_equal(size, 0);
    assert_string_equal(data, "");
    av_freep(&data);
    /* Larger than the socket buffer: written by another process while this one reads. */
    writer = fork();
    assert_true(writer >= 0);
    if (writer == 0)
        _exit(mw_jobproc_frame_write(sv[0], big, 100000) == 0 ? 0 : 1);
    assert_int_equal(mw_jobproc_frame_read(sv[1], &data, &size, av_gettime_relative() + 5000000), 0);
    assert_int_equal(waitpid(writer, &status, 0), writer);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(size, 100000);
    assert_int_equal(data[99999], big_fill);
    av_freep(&data);
    /* Nothing arrives: the deadline ends the wait. */
    assert_int_equal(mw_jobproc_frame_read(sv[1], &data, &size, av_gettime_relative() + 50000), AVERROR(ETIMEDOUT));
    assert_null(data);
    /* A length over the maximum is refused without allocating it. */
    assert_int_equal(write(sv[0], "\x7f\xff\xff\xff", 4), 4);
    assert_int_equal(mw_jobproc_frame_read(sv[1], &data, &size, 0), AVERROR_INVALIDDATA);
    close(sv[0]);
    close(sv[1]);
    /* A frame cut short by the peer's exit is invalid; a clean close between frames is EOF. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[0], "\x00\x00\x00\x09" "abc", 7), 7);
    close(sv[0]);
    assert_int_equal(mw_jobproc_frame_read(sv[1], &data, &size, 0), AVERROR_INVALIDDATA);
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[0]);
    assert_int_equal(mw_jobproc_frame_read(sv[1], &data, &size, 0), AVERROR_EOF);
    assert_int_equal(mw_jobproc_frame_write(sv[1], "x", 1), AVERROR(EPIPE));
    close(sv[1]);
    av_free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_is_fifo_and_bounded),
        cmocka_unit_test(queue_close_drains_then_eof),
        cmocka_unit_test(queue_wakes_a_waiting_consumer),
        cmocka_unit_test(backoff_grows_caps_and_jitters),
        cmocka_unit_test(retry_after_parses_seconds_and_dates),
        cmocka_unit_test(report_status_classes),
        cmocka_unit_test(attempt_counts_are_signed),
        cmocka_unit_test(retry_delays_and_tiers),
        cmocka_unit_test(ipc_frames_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
