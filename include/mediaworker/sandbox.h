/*
 * Confinement of a job process, applied once before it touches any media.
 *
 * Job processes decode files uploaded by strangers with libraries that have a long CVE history, so a
 * compromised decoder must find nothing useful around it:
 *  - no core dumps (a decoder's core holds a user's pictures); the job process sets its own resource
 *    limits (jobchild.c), since its CPU limit is re-armed for every job;
 *  - an unprivileged user when started as root and one is configured;
 *  - no new privileges (setuid binaries and file capabilities stop working);
 *  - Landlock (where the kernel has it): the filesystem shrinks to the listed directories, read-only or
 *    read-write, so other users' uploads, /etc and the supervisor's secrets are unreadable;
 *  - a seccomp filter that allows the system calls the libav pipeline makes and fails everything else with
 *    EPERM: no sockets, no exec, no fork (threads only), no ptrace, no mounts, no namespaces, and signals,
 *    priorities and limits only for the calling process itself.
 * Which layers took effect is reported, since Landlock depends on the kernel.
 */
#ifndef MEDIAWORKER_SANDBOX_H
#define MEDIAWORKER_SANDBOX_H

#include <stdint.h>
#include <sys/types.h>

#define MW_SANDBOX_MAX_PATHS 16

/* 1 in AddressSanitizer builds, whose leak check runs at exit: a job's process must then exit() (not
 * _exit()), and its sandbox must let the leak scanner work. */
#if defined(__SANITIZE_ADDRESS__)
#define MW_LEAK_SCAN_AT_EXIT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MW_LEAK_SCAN_AT_EXIT 1
#endif
#endif
#ifndef MW_LEAK_SCAN_AT_EXIT
#define MW_LEAK_SCAN_AT_EXIT 0
#endif

struct mw_sandbox_policy {
    const char *read_only[MW_SANDBOX_MAX_PATHS];   /* NULL-terminated directories (or files) */
    const char *read_write[MW_SANDBOX_MAX_PATHS];
    uid_t uid;                  /* switched to when run_as_user is set and we are root */
    gid_t gid;
    int run_as_user;
};

struct mw_sandbox_status {
    int landlock_abi;           /* 0 when the kernel has no Landlock: filesystem not confined */
    int seccomp;                /* 1 when the filter is installed */
    int user_dropped;
};

/*
 * Applies the policy to the calling process (and the threads it creates afterwards; call it before
 * starting any). Irreversible. Returns 0 with *status filled, or a negative AVERROR naming the step that
 * failed in the log; on failure the process must not run jobs.
 */
int mw_sandbox_apply(const struct mw_sandbox_policy *policy, struct mw_sandbox_status *status);

/*
 * Compiles the seccomp filter mw_sandbox_apply loads, once per process; processes forked afterwards
 * inherit it compiled. Optional (mw_sandbox_apply compiles it when it was not), 0 or a negative AVERROR.
 */
int mw_sandbox_prepare(void);

#endif
