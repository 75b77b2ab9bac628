/* A QEMU TCG plugin that counts the guest instructions executed, per translated block,
 * between two calls of a marker function: tools/qemu.py profile loads it into the
 * emulated ESP32 and maps the blocks to the firmware's functions.
 *
 *   -plugin insnprof.so,out=FILE,mark=0xADDR
 *
 * Every time a block starting at ADDR (the marker: a function the workload calls before
 * and after itself) runs, the counts since the last mark are appended to FILE as lines
 * "pc instructions executions", then a line "--", and the counts start again from zero.
 * Counting is inline (a 64-bit add per block executed), so the guest's time is barely
 * changed. Built by tools/qemu.py against the SDK's qemu-plugin.h. */
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

typedef struct {
    uint64_t pc;
    uint64_t insns;         /* in the block */
    uint64_t execs;         /* since the last mark */
} block_t;

static GHashTable *blocks;  /* (pc << 8 | insns) -> block_t: a pc retranslated longer is new */
static GMutex lock;
static uint64_t mark_pc;
static FILE *out;

static void dump(void)
{
    GHashTableIter it;
    gpointer value;

    g_mutex_lock(&lock);
    g_hash_table_iter_init(&it, blocks);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        block_t *b = value;
        if (b->execs) {
            fprintf(out, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", b->pc, b->insns, b->execs);
            b->execs = 0;
        }
    }
    fprintf(out, "--\n");
    fflush(out);
    g_mutex_unlock(&lock);
}

static void on_mark(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    (void)udata;
    dump();
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    uint64_t pc = qemu_plugin_tb_vaddr(tb);
    uint64_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t key = pc << 8 | (n & 0xff);
    block_t *b;

    (void)id;
    g_mutex_lock(&lock);
    b = g_hash_table_lookup(blocks, &key);
    if (b == NULL) {
        uint64_t *k = g_new(uint64_t, 1);
        *k = key;
        b = g_new0(block_t, 1);
        b->pc = pc;
        b->insns = n;
        g_hash_table_insert(blocks, k, b);
    }
    g_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->execs, 1);
    if (pc == mark_pc) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    (void)id;
    (void)p;
    dump();
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    const char *path = NULL;

    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
        } else if (strncmp(argv[i], "mark=", 5) == 0) {
            mark_pc = strtoull(argv[i] + 5, NULL, 0);
        }
    }
    if (path == NULL || mark_pc == 0 || (out = fopen(path, "w")) == NULL) {
        fprintf(stderr, "insnprof: needs out=FILE and mark=ADDR\n");
        return -1;
    }
    blocks = g_hash_table_new(g_int64_hash, g_int64_equal);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
