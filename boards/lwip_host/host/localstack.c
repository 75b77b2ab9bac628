/* The lwIP host board's own IP stack (boards/lwip_host/README.md, "The board's own
 * stack"). On an ESP32 the firmware's sockets are lwIP's: the page's server listens on
 * the access point's address, the MQTT publisher connects out from the WAN address at
 * one of lwIP's own ports (0xC000 and up: natlink claims none of them). Here the
 * firmware's sockets are the Linux kernel's, in the router's namespace: a TUN device
 * there holds the LAN and WAN addresses, and this program hands the kernel exactly what
 * lwIP would take for those sockets (local_divert, from the TAP readers), and sends what
 * the kernel answers out through natlink as the router's own packets (the main loop).
 * TCP to the LAN address arriving on the WAN stays with lwIP, which has no listener
 * there: as on an ESP32, whose page is bound to the access point's netif. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "localstack.h"

static int fd = -1;

void local_open(const char *name)
{
    struct ifreq ifr;

    fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "lwip_host: /dev/net/tun: %s\n", strerror(errno));
        exit(2);
    }
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        fprintf(stderr, "lwip_host: TUNSETIFF %s: %s\n", name, strerror(errno));
        exit(2);
    }
}

int local_fd(void)
{
    return fd;
}

int local_divert(int wan, const uint8_t *frame, size_t len, const uint8_t lan_addr[4],
                 const uint8_t wan_addr[4])
{
    const uint8_t *ip = frame + 14;
    size_t ihl, total;

    if (fd < 0 || len < 14 + 20 || ip[9] != 6 || (ip[6] & 0x3f) != 0 || ip[7] != 0) {
        return 0;                   /* not TCP, or a fragment: lwIP's */
    }
    ihl = (size_t)(ip[0] & 0x0f) * 4;
    total = (size_t)ip[2] << 8 | ip[3];
    if (ihl < 20 || total < ihl + 4 || 14 + total > len) {
        return 0;
    }
    if (wan) {
        unsigned dport = (unsigned)ip[ihl + 2] << 8 | ip[ihl + 3];
        if (memcmp(ip + 16, wan_addr, 4) != 0 || dport < LOCAL_PORTS_FIRST) {
            return 0;
        }
    } else if (memcmp(ip + 16, lan_addr, 4) != 0) {
        return 0;
    }
    return write(fd, ip, total) == (ssize_t)total ? 1 : -1;
}

ssize_t local_read(uint8_t *buf, size_t cap)
{
    ssize_t n = fd < 0 ? -1 : read(fd, buf, cap);
    return n < 20 ? 0 : n;
}
