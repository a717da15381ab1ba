/*
 * A TCG plugin for qemu-user (plugin API version 1, QEMU 7.2 and later) that
 * counts the guest instructions a process executes, for scripts/bench:
 * instructions per request = the growth of the count over N requests / N.
 * Unlike CPU time, the count does not depend on what else the machine does.
 *
 * Each translated block adds its instruction count when it runs (an atomic
 * add: the guest's threads run in parallel). A thread of the plugin writes the
 * running total to the file named by its argument (out=PATH) every 20 ms,
 * through a temporary file and a rename, so a reader never sees half a number,
 * and once more when the process exits (a process that reads its work from
 * standard input and ends, such as PostgreSQL in single-user mode, is counted
 * whole).
 * Blocked system calls (an idle server waiting in epoll_wait) execute no guest
 * instructions, so the count stands still while the server waits.
 *
 *   cc -shared -fPIC -O2 -o instructions.so bench/instructions.c -lpthread
 *   qemu-x86_64 -plugin ./instructions.so,out=/tmp/count comprobify serve
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The few declarations of QEMU's plugin API this uses (include/qemu/qemu-plugin.h). */
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_info_t;
enum { PLUGIN_CB_NO_REGS = 0 };
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
void qemu_plugin_register_vcpu_tb_exec_cb(
    struct qemu_plugin_tb *tb, void (*cb)(unsigned int, void *), int flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, void *), void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t total;
static char path[4096];
static char temporary[4096 + 8];

static void executed(unsigned int vcpu, void *instructions) {
    (void)vcpu;
    __atomic_fetch_add(&total, (uint64_t)(uintptr_t)instructions, __ATOMIC_RELAXED);
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, executed, PLUGIN_CB_NO_REGS, (void *)(uintptr_t)qemu_plugin_tb_n_insns(tb));
}

static pthread_mutex_t writing = PTHREAD_MUTEX_INITIALIZER;

static void write_total(void) {
    pthread_mutex_lock(&writing);
    FILE *file = fopen(temporary, "w");
    if (file) {
        fprintf(file, "%" PRIu64 "\n", __atomic_load_n(&total, __ATOMIC_RELAXED));
        fclose(file);
        rename(temporary, path);
    }
    pthread_mutex_unlock(&writing);
}

static void *report(void *unused) {
    (void)unused;
    for (;;) {
        write_total();
        usleep(20000);
    }
    return NULL;
}

static void exiting(qemu_plugin_id_t id, void *unused) {
    (void)id;
    (void)unused;
    write_total();
}

__attribute__((visibility("default"))) int qemu_plugin_install(
    qemu_plugin_id_t id, const struct qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) snprintf(path, sizeof path, "%s", argv[i] + 4);
    }
    if (path[0] == 0) {
        fprintf(stderr, "instructions: give the output file as out=PATH\n");
        return 1;
    }
    snprintf(temporary, sizeof temporary, "%s.next", path);
    pthread_t thread;
    if (pthread_create(&thread, NULL, report, NULL) != 0) return 1;
    pthread_detach(thread);
    qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
    qemu_plugin_register_atexit_cb(id, exiting, NULL);
    return 0;
}
