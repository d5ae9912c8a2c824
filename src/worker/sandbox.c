/*
 * Notes on the filter. The allow-list was drawn from what decoding, scaling, encoding and muxing make
 * glibc and libav do (strace of the test suite's jobs): memory management, file I/O on descriptors and on
 * paths (Landlock decides which paths), threads (clone with CLONE_THREAD only; clone3 answers ENOSYS so
 * glibc falls back to clone, whose flags a filter can inspect), futexes, time, signals for the process
 * itself, and send/recv on the descriptors it already holds (the socketpair to the supervisor). Calls that
 * name another process (signals, priorities, affinity, resource limits) are allowed only on the job process
 * itself. Compiling the allow-list costs more than a small probe, so it is compiled once, in the warm
 * process (mw_sandbox_prepare), and each job's child loads it together with a filter of a dozen
 * instructions of its own that lets signals reach only its own pid; stacked filters give the strictest
 * answer of the two. Creating
 * sockets, connecting, exec, ptrace, mount, namespaces and keyrings fail with EPERM, which libraries handle
 * as an ordinary error instead of dying mid-job.
 */
/* O_PATH and the clone flags are Linux-specific. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <seccomp.h>

#include "mediaworker/log.h"
#include "mediaworker/sandbox.h"

/* Debian 12's kernel headers predate Landlock ABI 3; the value is fixed by the kernel's UAPI. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

static const int allowed_syscalls[] = {
    SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64), SCMP_SYS(pwrite64),
    SCMP_SYS(lseek), SCMP_SYS(close), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(stat),
    SCMP_SYS(lstat), SCMP_SYS(openat), SCMP_SYS(open), SCMP_SYS(access), SCMP_SYS(faccessat),
    SCMP_SYS(faccessat2), SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(getdents64), SCMP_SYS(getcwd),
    SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(unlink), SCMP_SYS(unlinkat),
    SCMP_SYS(mkdir), SCMP_SYS(mkdirat), SCMP_SYS(rmdir), SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(flock),
    SCMP_SYS(ftruncate), SCMP_SYS(fallocate), SCMP_SYS(fcntl), SCMP_SYS(dup), SCMP_SYS(dup2), SCMP_SYS(dup3),
    SCMP_SYS(pipe2), SCMP_SYS(ioctl), SCMP_SYS(fadvise64), SCMP_SYS(umask), SCMP_SYS(utimensat),
    SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk),
    SCMP_SYS(membarrier), SCMP_SYS(futex), SCMP_SYS(set_robust_list),
    SCMP_SYS(rseq), SCMP_SYS(set_tid_address), SCMP_SYS(sched_yield),
   
    SCMP_SYS(sched_get_priority_max), SCMP_SYS(sched_get_priority_min),
    SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(getpid), SCMP_SYS(gettid),
    SCMP_SYS(getppid), SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid),
    SCMP_SYS(getresuid), SCMP_SYS(getresgid), SCMP_SYS(getrlimit), SCMP_SYS(getrusage),
    SCMP_SYS(sysinfo), SCMP_SYS(uname), SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres),
    SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(gettimeofday), SCMP_SYS(time),
    SCMP_SYS(getrandom), SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
    SCMP_SYS(sigaltstack), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(select),
    SCMP_SYS(pselect6), SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait), SCMP_SYS(eventfd2), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(sendto),
    SCMP_SYS(recvfrom), SCMP_SYS(shutdown), SCMP_SYS(get_mempolicy), SCMP_SYS(arch_prctl),
    /* A stopped and continued process (SIGSTOP/SIGCONT, a debugger) resumes its interrupted call with this. */
    SCMP_SYS(restart_syscall), SCMP_SYS(fstatfs), SCMP_SYS(statfs), SCMP_SYS(close_range), SCMP_SYS(fchmod),
    SCMP_SYS(fchmodat),
};

/* LeakSanitizer scans a process at exit from a helper it clones (not a thread), which ptraces the threads
 * it finds in /proc; sanitizer builds allow exactly that, so job processes keep their leak check. Release
 * builds never do. */
static const int leak_scan_syscalls[] = {SCMP_SYS(ptrace), SCMP_SYS(wait4), SCMP_SYS(getdents)};

/* What a job may ask prctl for: thread names (libav and x264 name their threads), reading its own state,
 * naming anonymous memory (glibc's allocator). Not PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_PTRACER and
 * the rest, which change how other processes may treat this one. */
static const int allowed_prctl_options[] = {
    PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE, PR_CAPBSET_READ, PR_GET_NO_NEW_PRIVS, PR_GET_SECCOMP,
    0x53564d41 /* PR_SET_VMA */, PR_GET_TIMERSLACK,
};

/* LeakSanitizer's tracer sets these on itself before it attaches to the threads (PR_SET_PDEATHSIG only with
 * SIGKILL, below, so that clearing it stays refused). */
static const int leak_scan_prctl_options[] = {PR_SET_PTRACER, PR_SET_DUMPABLE};

static int forbid_core_dumps(void)
{
    struct rlimit no_core = {0, 0};

    if (setrlimit(RLIMIT_CORE, &no_core) < 0) {
        int ret = AVERROR(errno);
        mw_log(MW_LOG_ERROR, "sandbox", "setrlimit(RLIMIT_CORE): %s", strerror(errno));
        return ret;
    }
    return 0;
}

static int drop_user(const struct mw_sandbox_policy *policy, struct mw_sandbox_status *status)
{
    pid_t parent = getppid();
    int death_signal = 0;

    if (!policy->run_as_user || geteuid() != 0)
        return 0;
    if (prctl(PR_GET_PDEATHSIG, &death_signal) < 0)
        return AVERROR(errno);
    if (setgroups(0, NULL) < 0 || setgid(policy->gid) < 0 || setuid(policy->uid) < 0) {
        int ret = AVERROR(errno);
        mw_log(MW_LOG_ERROR, "sandbox", "cannot switch to uid %d: %s", (int)policy->uid, strerror(errno));
        return ret;
    }
    /* The kernel clears the parent-death signal when credentials change: without it again, a job process
     * whose parent was killed would run on unsupervised, past every deadline. A parent that died in between
     * is seen by the changed parent pid. */
    if (death_signal && (prctl(PR_SET_PDEATHSIG, death_signal) < 0 || getppid() != parent)) {
        mw_log(MW_LOG_ERROR, "sandbox", "the parent process is gone");
        return AVERROR(ESRCH);
    }
    status->user_dropped = 1;
    return 0;
}

static uint64_t landlock_rights(int abi, int writable)
{
    uint64_t read = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_EXECUTE;
    uint64_t write = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                     LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG;

    if (abi >= 2)
        write |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        write |= LANDLOCK_ACCESS_FS_TRUNCATE;
    return writable ? read | write : read;
}

/* Every right this ABI knows is handled, so anything not granted below is denied. */
static uint64_t landlock_handled(int abi)
{
    return landlock_rights(abi, 1) | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_SOCK |
           LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
}

static int add_landlock_paths(int ruleset, const char *const *paths, uint64_t rights)
{
    for (int i = 0; i < MW_SANDBOX_MAX_PATHS && paths[i]; i++) {
        struct landlock_path_beneath_attr rule = {.allowed_access = rights};
        struct stat st;
        int ret = 0;

        rule.parent_fd = open(paths[i], O_PATH | O_CLOEXEC);
        if (rule.parent_fd < 0) {
            mw_log(MW_LOG_ERROR, "sandbox", "cannot open %s for Landlock: %s", paths[i], strerror(errno));
            return AVERROR(errno);
        }
        /* Directory-only rights on a file are refused by the kernel. */
        if (fstat(rule.parent_fd, &st) == 0 && !S_ISDIR(st.st_mode))
            rule.allowed_access &= LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                   LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_TRUNCATE;
        if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0) {
            ret = AVERROR(errno);
            mw_log(MW_LOG_ERROR, "sandbox", "Landlock rule for %s: %s", paths[i], strerror(errno));
        }
        close(rule.parent_fd);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int apply_landlock(const struct mw_sandbox_policy *policy, struct mw_sandbox_status *status)
{
    struct landlock_ruleset_attr attr = {0};
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    int ruleset, ret;

    if (abi < 1) {
        mw_log(MW_LOG_WARN, "sandbox", "the kernel has no Landlock: job processes can read any file the user can");
        return 0;
    }
    attr.handled_access_fs = landlock_handled((int)abi);
    ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
    if (ruleset < 0)
        return AVERROR(errno);
    ret = add_landlock_paths(ruleset, policy->read_only, landlock_rights((int)abi, 0));
    if (ret >= 0 && MW_LEAK_SCAN_AT_EXIT)
        ret = add_landlock_paths(ruleset, (const char *const[MW_SANDBOX_MAX_PATHS]){"/proc"},
                                 landlock_rights((int)abi, 0));
    if (ret >= 0)
        ret = add_landlock_paths(ruleset, policy->read_write, landlock_rights((int)abi, 1));
    if (ret >= 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
        ret = AVERROR(errno);
    close(ruleset);
    if (ret >= 0)
        status->landlock_abi = (int)abi;
    return ret;
}

/* libseccomp's SCMP_A0() leaves datum_b to the compiler; spelled out, every field is set. */
static struct scmp_arg_cmp arg_equals(unsigned int arg, scmp_datum_t value)
{
    return (struct scmp_arg_cmp){.arg = arg, .op = SCMP_CMP_EQ, .datum_a = value, .datum_b = 0};
}

static int allow_for_self(scmp_filter_ctx filter)
{
    /* Signals: kill and tgkill pass here and only to the own pid in the job's own filter (own_pid_filter);
     * tkill names no thread group and is refused. */
    int ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(kill), 0);

    if (ret == 0)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 0);
    /* Priorities of the calling thread only (who = 0), which is how the encoders lower their threads. */
    if (ret == 0)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(setpriority), 2,
                               arg_equals(0, PRIO_PROCESS), arg_equals(1, 0));
    if (ret == 0)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(getpriority), 2,
                               arg_equals(0, PRIO_PROCESS), arg_equals(1, 0));
    /* Calls that change something of a pid, where 0 means the caller: other pids are refused. Reading
     * scheduling state stays open, since pthread_getattr_np asks it of a thread by its tid. */
    static const int own_pid_calls[] = {SCMP_SYS(sched_setaffinity), SCMP_SYS(prlimit64), SCMP_SYS(get_robust_list)};
    static const int read_scheduling_calls[] = {
        SCMP_SYS(sched_getaffinity), SCMP_SYS(sched_getparam), SCMP_SYS(sched_getscheduler),
    };

    for (size_t i = 0; ret == 0 && i < sizeof(read_scheduling_calls) / sizeof(read_scheduling_calls[0]); i++)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, read_scheduling_calls[i], 0);
    for (size_t i = 0; ret == 0 && i < sizeof(own_pid_calls) / sizeof(own_pid_calls[0]); i++)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, own_pid_calls[i], 1, arg_equals(0, 0));
    for (size_t i = 0; ret == 0 && i < sizeof(allowed_prctl_options) / sizeof(allowed_prctl_options[0]); i++)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                               arg_equals(0, (scmp_datum_t)allowed_prctl_options[i]));
    for (size_t i = 0; MW_LEAK_SCAN_AT_EXIT && ret == 0 &&
                       i < sizeof(leak_scan_prctl_options) / sizeof(leak_scan_prctl_options[0]); i++)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                               arg_equals(0, (scmp_datum_t)leak_scan_prctl_options[i]));
    if (MW_LEAK_SCAN_AT_EXIT && ret == 0)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 2, arg_equals(0, PR_SET_PDEATHSIG),
                               arg_equals(1, SIGKILL));
    return ret;
}

/* The allow-list, compiled: shared by every job's child of the warm process that compiled it. */
static struct sock_fprog allow_list;

static int compile_allow_list(scmp_filter_ctx filter)
{
    int ret = 0;

    for (size_t i = 0; i < sizeof(allowed_syscalls) / sizeof(allowed_syscalls[0]) && ret == 0; i++)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, allowed_syscalls[i], 0);
    if (ret == 0)
        ret = allow_for_self(filter);
    /* Threads yes, processes no: clone is allowed only with CLONE_THREAD. */
    if (ret == 0 && MW_LEAK_SCAN_AT_EXIT)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(clone), 0);
    else if (ret == 0)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    for (size_t i = 0; MW_LEAK_SCAN_AT_EXIT && i < sizeof(leak_scan_syscalls) / sizeof(leak_scan_syscalls[0]) && ret == 0; i++)
        ret = seccomp_rule_add(filter, SCMP_ACT_ALLOW, leak_scan_syscalls[i], 0);
    if (ret == 0)
        ret = seccomp_rule_add(filter, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    return ret;
}

/* libseccomp 2.5 exports a program only to a descriptor: through a memory file, read back whole. */
static int export_allow_list(scmp_filter_ctx filter)
{
    struct stat st;
    int fd = memfd_create("mw-seccomp", MFD_CLOEXEC);
    int ret;

    if (fd < 0)
        return AVERROR(errno);
    ret = seccomp_export_bpf(filter, fd);
    if (ret == 0 && (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) ||
                     st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS))
        ret = -EINVAL;
    if (ret == 0 && !(allow_list.filter = av_malloc((size_t)st.st_size)))
        ret = -ENOMEM;
    if (ret == 0 && pread(fd, allow_list.filter, (size_t)st.st_size, 0) != st.st_size) {
        av_freep(&allow_list.filter);
        ret = -EIO;
    }
    if (ret == 0)
        allow_list.len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
    close(fd);
    return ret < 0 ? AVERROR(-ret) : 0;
}

int mw_sandbox_prepare(void)
{
    scmp_filter_ctx filter;
    int ret;

    if (allow_list.filter)
        return 0;
    if (!(filter = seccomp_init(SCMP_ACT_ERRNO(EPERM))))
        return AVERROR(ENOMEM);
    ret = compile_allow_list(filter);
    ret = ret < 0 ? AVERROR(-ret) : export_allow_list(filter);
    seccomp_release(filter);
    if (ret < 0)
        mw_log(MW_LOG_ERROR, "sandbox", "seccomp: cannot compile the filter: %s", av_err2str(ret));
    return ret;
}

#if defined(__x86_64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "own_pid_filter: name this architecture's AUDIT_ARCH"
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG0_LOW offsetof(struct seccomp_data, args[0])
#define ARG0_HIGH (offsetof(struct seccomp_data, args[0]) + 4)
#else
#define ARG0_LOW (offsetof(struct seccomp_data, args[0]) + 4)
#define ARG0_HIGH offsetof(struct seccomp_data, args[0])
#endif

/*
 * kill and tgkill only with the own pid as their first argument (tgkill names the thread group, so the
 * process's own threads stay reachable); kill(0, ..) and negative pids reach a process group and fail.
 * Everything else is left to the allow-list, which also refuses foreign architectures and x32 calls.
 */
static int load_own_pid_filter(pid_t self)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_kill, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_tgkill, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LOW),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)self, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_HIGH),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    };
    struct sock_fprog program = {.len = sizeof(code) / sizeof(code[0]), .filter = code};

    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) < 0 ? AVERROR(errno) : 0;
}

static int apply_seccomp(struct mw_sandbox_status *status)
{
    int ret = mw_sandbox_prepare();

    /* The own-pid filter first: the allow-list, once loaded, refuses loading filters. */
    if (ret == 0)
        ret = load_own_pid_filter(getpid());
    if (ret == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &allow_list) < 0)
        ret = AVERROR(errno);
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "sandbox", "seccomp: %s", av_err2str(ret));
        return ret;
    }
    status->seccomp = 1;
    return 0;
}

int mw_sandbox_apply(const struct mw_sandbox_policy *policy, struct mw_sandbox_status *status)
{
    int ret;

    memset(status, 0, sizeof(*status));
    if ((ret = forbid_core_dumps()) < 0 || (ret = drop_user(policy, status)) < 0)
        return ret;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return AVERROR(errno);
    if ((ret = apply_landlock(policy, status)) < 0 || (ret = apply_seccomp(status)) < 0)
        return ret;
    mw_log(MW_LOG_DEBUG, "sandbox", "applied: landlock abi %d, seccomp %d, user dropped %d", status->landlock_abi,
           status->seccomp, status->user_dropped);
    return 0;
}
