#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mediaworker/error.h"
#include "mediaworker/netpolicy.h"

struct denied_range {
    const char *network;
    int prefix_length;
    const char *reason;
};

static const struct denied_range denied_v4[] = {
    {"0.0.0.0", 8, "\"this\" network"},
    {"10.0.0.0", 8, "private network"},
    {"100.64.0.0", 10, "carrier-grade NAT"},
    {"127.0.0.0", 8, "loopback"},
    {"169.254.0.0", 16, "link-local (cloud metadata)"},
    {"172.16.0.0", 12, "private network"},
    {"192.0.0.0", 24, "IETF protocol assignments"},
    {"192.168.0.0", 16, "private network"},
    {"198.18.0.0", 15, "benchmarking network"},
    {"224.0.0.0", 4, "multicast"},
    {"240.0.0.0", 4, "reserved"},
};

static const struct denied_range denied_v6[] = {
    {"::", 128, "unspecified address"},
    {"::1", 128, "loopback"},
    {"fc00::", 7, "unique local (private)"},
    {"fe80::", 10, "link-local"},
    {"ff00::", 8, "multicast"},
};

static int prefix_matches(const unsigned char *address, const unsigned char *network, int prefix_length)
{
    int whole = prefix_length / 8;
    int rest = prefix_length % 8;

    if (memcmp(address, network, (size_t)whole))
        return 0;
    if (!rest)
        return 1;
    return ((address[whole] ^ network[whole]) & (0xFF << (8 - rest))) == 0;
}

static int parse_network(const char *text, struct mw_netpolicy_network *net)
{
    char address[64];
    const char *slash = strchr(text, '/');
    size_t length = slash ? (size_t)(slash - text) : strlen(text);
    char *end;
    long prefix;

    if (length == 0 || length >= sizeof(address))
        return -1;
    memcpy(address, text, length);
    address[length] = '\0';
    if (inet_pton(AF_INET, address, net->address) == 1)
        net->family = AF_INET;
    else if (inet_pton(AF_INET6, address, net->address) == 1)
        net->family = AF_INET6;
    else
        return -1;
    net->prefix_length = net->family == AF_INET ? 32 : 128;
    if (slash) {
        prefix = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || prefix < 0 || prefix > net->prefix_length)
            return -1;
        net->prefix_length = (int)prefix;
    }
    return 0;
}

int mw_netpolicy_parse(struct mw_netpolicy *policy, const char *allow_list, char *err, size_t err_size)
{
    char list[1024];
    char *save = NULL;

    memset(policy, 0, sizeof(*policy));
    if (!allow_list || !*allow_list)
        return 0;
    snprintf(list, sizeof(list), "%s", allow_list);
    for (char *entry = strtok_r(list, ", ", &save); entry; entry = strtok_r(NULL, ", ", &save)) {
        if (policy->allowed_count == MW_NETPOLICY_MAX_ALLOWED) {
            snprintf(err, err_size, "MW_URL_ALLOW_NETWORKS: more than %d networks", MW_NETPOLICY_MAX_ALLOWED);
            return MW_ERR_CONFIG;
        }
        if (parse_network(entry, &policy->allowed[policy->allowed_count]) < 0) {
            snprintf(err, err_size, "MW_URL_ALLOW_NETWORKS: \"%.64s\" is not an address or CIDR network", entry);
            return MW_ERR_CONFIG;
        }
        policy->allowed_count++;
    }
    return 0;
}

static const char *denied_reason(int family, const unsigned char *address)
{
    const struct denied_range *ranges = family == AF_INET ? denied_v4 : denied_v6;
    size_t count = family == AF_INET ? sizeof(denied_v4) / sizeof(denied_v4[0])
                                     : sizeof(denied_v6) / sizeof(denied_v6[0]);
    unsigned char network[16];

    for (size_t i = 0; i < count; i++) {
        if (inet_pton(family, ranges[i].network, network) == 1 &&
            prefix_matches(address, network, ranges[i].prefix_length))
            return ranges[i].reason;
    }
    return NULL;
}

static int allowed_by_list(const struct mw_netpolicy *policy, int family, const unsigned char *address)
{
    for (int i = 0; i < policy->allowed_count; i++)
        if (policy->allowed[i].family == family &&
            prefix_matches(address, policy->allowed[i].address, policy->allowed[i].prefix_length))
            return 1;
    return 0;
}

/* IPv6 forms that carry an IPv4 address a router will deliver to: mapped, NAT64, 6to4. */
static const unsigned char *embedded_v4(const unsigned char *v6)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    static const unsigned char nat64[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};

    if (!memcmp(v6, mapped, sizeof(mapped)) || !memcmp(v6, nat64, sizeof(nat64)))
        return v6 + 12;
    if (v6[0] == 0x20 && v6[1] == 0x02)
        return v6 + 2;
    return NULL;
}

int mw_netpolicy_allows(const struct mw_netpolicy *policy, const struct sockaddr *addr, const char **reason)
{
    const unsigned char *address;
    const unsigned char *inner;
    const char *why;
    int family = addr->sa_family;

    if (family == AF_INET) {
        address = (const unsigned char *)&((const struct sockaddr_in *)(const void *)addr)->sin_addr;
    } else if (family == AF_INET6) {
        address = ((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr.s6_addr;
        inner = embedded_v4(address);
        if (inner) {
            family = AF_INET;
            address = inner;
        }
    } else {
        if (reason)
            *reason = "not an IP address";
        return 0;
    }
    if (allowed_by_list(policy, family, address))
        return 1;
    why = denied_reason(family, address);
    if (reason)
        *reason = why;
    return why == NULL;
}
