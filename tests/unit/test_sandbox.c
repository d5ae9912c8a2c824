#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mediaworker/sandbox.h"

enum outcome {
    SOCKET_DENIED = 1 << 0,
    EXEC_DENIED = 1 << 1,
    FORK_DENIED = 1 << 2,
    OUTSIDE_READ_DENIED = 1 << 3,
    INPUT_READABLE = 1 << 4,
    SCRATCH_WRITABLE = 1 << 5,
    THREADS_WORK = 1 << 6,
    INPUT_NOT_WRITABLE = 1 << 7,
    LANDLOCK_ACTIVE = 1 << 8,
    APPLIED = 1 << 9,
    OTHERS_UNTOUCHABLE = 1 << 10,
    SELF_REACHABLE = 1 << 11,
};

static pid_t bystander;

static char base[64];
static char input_dir[128], scratch_dir[128], outside_file[128], input_file[160];

static int make_dirs(void **state)
{
    FILE *f;

    (void)state;
    snprintf(base, sizeof(base), "/tmp/mw-sandbox-XXXXXX");
    if (!mkdtemp(base))
        return -1;
    snprintf(input_dir, sizeof(input_dir), "%s/input", base);
    snprintf(scratch_dir, sizeof(scratch_dir), "%s/scratch", base);
    snprintf(outside_file, sizeof(outside_file), "%s/other-users-upload.mp4", base);
    snprintf(input_file, sizeof(input_file), "%s/clip.mp4", input_dir);
    mkdir(input_dir, 0755);
    mkdir(scratch_dir, 0755);
    if (!(f = fopen(outside_file, "w")))
        return -1;
    fclose(f);
    if (!(f = fopen(input_file, "w")))
        return -1;
    fputs("media", f);
    fclose(f);
    return 0;
}

static void *thread_body(void *arg)
{
    return arg;
}

/* Runs in the sandboxed child; every probe of the sandbox sets a bit of the exit status. */
static int try_everything(void)
{
    struct mw_sandbox_policy policy = {
        .read_only = {input_dir},
        .read_write = {scratch_dir},
    };
    struct mw_sandbox_status status;
    char scratch_file[200];
    pthread_t thread;
    void *result = NULL;
    int outcome = 0;
    int fd;

    if (mw_sandbox_apply(&policy, &status) < 0)
        return 0;
    outcome |= APPLIED;
    if (status.landlock_abi > 0)
        outcome |= LANDLOCK_ACTIVE;
    if (socket(AF_INET, SOCK_STREAM, 0) < 0 && errno == EPERM)
        outcome |= SOCKET_DENIED;
    if (execl("/bin/true", "true", (char *)NULL) < 0)
        outcome |= EXEC_DENIED;
    if (open(outside_file, O_RDONLY) < 0 && open("/etc/passwd", O_RDONLY) < 0)
        outcome |= OUTSIDE_READ_DENIED;
    if ((fd = open(input_file, O_RDONLY)) >= 0) {
        outcome |= INPUT_READABLE;
        close(fd);
    }
    if (open(input_file, O_WRONLY) < 0)
        outcome |= INPUT_NOT_WRITABLE;
    snprintf(scratch_file, sizeof(scratch_file), "%s/frame.tmp", scratch_dir);
    if ((fd = open(scratch_file, O_WRONLY | O_CREAT, 0644)) >= 0 && write(fd, "x", 1) == 1) {
        outcome |= SCRATCH_WRITABLE;
        close(fd);
    }
    if (pthread_create(&thread, NULL, thread_body, &outcome) == 0 && pthread_join(thread, &result) == 0 &&
        result == &outcome)
        outcome |= THREADS_WORK;
    /* Other processes (a bystander, the parent) are out of reach: signals, priorities, limits, affinity. */
    if (kill(bystander, SIGTERM) < 0 && syscall(SYS_tgkill, bystander, bystander, SIGTERM) < 0 &&
        syscall(SYS_tkill, bystander, SIGTERM) < 0 && kill(getppid(), SIGTERM) < 0 && kill(0, 0) < 0 &&
        setpriority(PRIO_PROCESS, (id_t)bystander, 10) < 0 &&
        prlimit(bystander, RLIMIT_NOFILE, NULL, &(struct rlimit){0, 0}) < 0 &&
        sched_setaffinity(bystander, sizeof(cpu_set_t), &(cpu_set_t){0}) < 0 &&
        prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        outcome |= OTHERS_UNTOUCHABLE;
    /* ... while the process itself still is: its own signals, its threads' priority and names. */
    errno = 0;
    if (kill(getpid(), 0) == 0 && syscall(SYS_tgkill, getpid(), gettid(), 0) == 0 &&
        setpriority(PRIO_PROCESS, 0, getpriority(PRIO_PROCESS, 0) + 1) == 0 && errno == 0 &&
        prctl(PR_SET_NAME, "mw-test", 0, 0, 0) == 0)
        outcome |= SELF_REACHABLE;
    /* Last: where fork is allowed (sanitizer builds, for the leak scan) the copy must not run the checks
     * above, since the filter names the pid it was built for. */
    if (fork() < 0)
        outcome |= FORK_DENIED;
    return outcome;
}

static void job_process_is_confined(void **state)
{
    int pipe_fds[2];
    int outcome = 0;
    pid_t child;
    int wstatus;

    (void)state;
    bystander = fork();
    assert_true(bystander >= 0);
    if (bystander == 0) {
        pause();
        _exit(0);
    }
    assert_int_equal(pipe(pipe_fds), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int result = try_everything();
        /* _exit: the sandbox forbids what LeakSanitizer's exit-time scan needs (ptrace of a clone). */
        if (write(pipe_fds[1], &result, sizeof(result)) != sizeof(result))
            _exit(2);
        _exit(0);
    }
    close(pipe_fds[1]);
    assert_int_equal(read(pipe_fds[0], &outcome, sizeof(outcome)), sizeof(outcome));
    close(pipe_fds[0]);
    assert_int_equal(waitpid(child, &wstatus, 0), child);
    /* Still alive: the child's signals never reached it. */
    assert_int_equal(waitpid(bystander, &wstatus, WNOHANG), 0);
    kill(bystander, SIGKILL);
    waitpid(bystander, &wstatus, 0);
    assert_true(outcome & APPLIED);
    assert_true(outcome & OTHERS_UNTOUCHABLE);
    assert_true(outcome & SELF_REACHABLE);
    assert_true(outcome & SOCKET_DENIED);
    assert_true(outcome & EXEC_DENIED);
#if defined(__SANITIZE_ADDRESS__)
    /* Sanitizer builds let LeakSanitizer clone its scanner; release builds deny processes (checked there). */
    print_message("AddressSanitizer build: fork is allowed for the leak scan\n");
#else
    assert_true(outcome & FORK_DENIED);
#endif
    assert_true(outcome & INPUT_READABLE);
    assert_true(outcome & SCRATCH_WRITABLE);
    assert_true(outcome & THREADS_WORK);
    if (outcome & LANDLOCK_ACTIVE) {
        assert_true(outcome & OUTSIDE_READ_DENIED);
        assert_true(outcome & INPUT_NOT_WRITABLE);
    } else {
        print_message("kernel without Landlock: filesystem confinement not checked\n");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(job_process_is_confined),
    };
    return cmocka_run_group_tests(tests, make_dirs, NULL);
}
