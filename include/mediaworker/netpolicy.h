/*
 * Which network addresses a URL download may connect to.
 *
 * The check is made on the address a connection is about to use, after DNS, for every connection
 * (redirects included), so a hostname that resolves to an internal address, or a public name rebound to one
 * between checks, cannot reach internal hosts. Denied unless a configured allow-list network covers them:
 * "this network" 0/8, loopback, RFC 1918 private ranges, carrier-grade NAT, link-local (cloud metadata at
 * 169.254.169.254), benchmarking, multicast and reserved ranges, and their IPv6 equivalents (::, ::1,
 * fc00::/7, fe80::/10, multicast), plus IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4), which are
 * judged as the IPv4 address they carry.
 */
#ifndef MEDIAWORKER_NETPOLICY_H
#define MEDIAWORKER_NETPOLICY_H

#include <stddef.h>
#include <sys/socket.h>

#define MW_NETPOLICY_MAX_ALLOWED 16

struct mw_netpolicy_network {
    int family;                 /* AF_INET or AF_INET6 */
    unsigned char address[16];
    int prefix_length;
};

struct mw_netpolicy {
    int allowed_count;
    struct mw_netpolicy_network allowed[MW_NETPOLICY_MAX_ALLOWED];
};

/*
 * Parses a comma-separated CIDR allow-list ("127.0.0.0/8, ::1/128"; a bare address means a single host).
 * Empty or NULL allows nothing extra. Returns 0, or MW_ERR_CONFIG with the offending entry named in err.
 */
int mw_netpolicy_parse(struct mw_netpolicy *policy, const char *allow_list, char *err, size_t err_size);

/* 1 when a connection to addr is allowed, 0 when denied. reason (may be NULL) names the denied range. */
int mw_netpolicy_allows(const struct mw_netpolicy *policy, const struct sockaddr *addr, const char **reason);

#endif
