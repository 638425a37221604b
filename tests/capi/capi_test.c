/* The C API driven from C: load, chat with a streaming callback and a
 * stop, completion, tokenize/detokenize, embeddings, threads on one model,
 * and bad input (null pointers, invalid UTF-8, bad JSON, a freed handle).
 * Usage: capi_test CHAT_MODEL EMBED_MODEL EXPECTED_GREEDY_TEXT
 * Prints "capi: all checks passed" and exits 0, or names the failed check. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"

static int failures = 0;
#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fprintf(stderr, " (last error: %s)\n", infer_last_error() ? infer_last_error() : "none"); \
            failures++;                                    \
        }                                                  \
    } while (0)

struct collected {
    char text[8192];
    size_t len;
    int pieces;
    int stop_after; /* 0: never */
};

static int collect(const char *piece, size_t len, void *user) {
    struct collected *c = user;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, piece, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    c->pieces++;
    return c->stop_after && c->pieces >= c->stop_after;
}

static const char *MESSAGES = "[{\"role\": \"user\", \"content\": \"What is the capital of France?\"}]";

struct job {
    const InferModel *model;
    InferStatus status;
    char text[4096];
};

static void *chat_job(void *arg) {
    struct job *j = arg;
    InferGenerateOptions o = infer_generate_options_default();
    o.temperature = 0;
    o.max_tokens = 24;
    InferCompletion c;
    j->status = infer_chat(j->model, MESSAGES, &o, NULL, NULL, &c);
    if (c.text) {
        snprintf(j->text, sizeof j->text, "%s", c.text);
    }
    infer_completion_free(&c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: capi_test CHAT_MODEL EMBED_MODEL EXPECTED_GREEDY_TEXT\n");
        return 2;
    }
    const char *expected = argv[3];
    printf("infer %s\n", infer_version());

    /* Loading: bad arguments first. */
    InferModel *model = (InferModel *)1;
    CHECK(infer_model_load("/no/such/model.gguf", NULL, &model) == INFER_STATUS_ENGINE, "missing file");
    CHECK(model == NULL, "a failed load sets the handle to null");
    CHECK(infer_last_error() && strstr(infer_last_error(), "/no/such/model.gguf"), "the error names the file");
    CHECK(infer_model_load(NULL, NULL, &model) == INFER_STATUS_NULL_ARGUMENT, "null path");
    CHECK(infer_model_load(argv[1], NULL, NULL) == INFER_STATUS_NULL_ARGUMENT, "null out_model");
    CHECK(infer_model_load("\xff\xfe", NULL, &model) == INFER_STATUS_INVALID_UTF8, "path not UTF-8");
    InferLoadOptions lo = infer_load_options_default();
    lo.gpu_layers = -7;
    CHECK(infer_model_load(argv[1], &lo, &model) == INFER_STATUS_INVALID_ARGUMENT, "gpu_layers -7");

    lo = infer_load_options_default();
    lo.n_ctx = 1024;
    CHECK(infer_model_load(argv[1], &lo, &model) == INFER_STATUS_OK, "load %s", argv[1]);
    if (!model) {
        return 1;
    }

    /* Chat, greedy, streamed: the pieces make the text, which is what the Rust API gives. */
    InferGenerateOptions o = infer_generate_options_default();
    o.temperature = 0;
    o.max_tokens = 24;
    struct collected got = {0};
    InferCompletion c;
    CHECK(infer_chat(model, MESSAGES, &o, collect, &got, &c) == INFER_STATUS_OK, "chat");
    CHECK(c.text && strcmp(c.text, got.text) == 0, "streamed pieces equal the text: '%s' vs '%s'", c.text, got.text);
    CHECK(c.text && strcmp(c.text, expected) == 0, "C and Rust give the same greedy reply: '%s' vs '%s'", c.text, expected);
    CHECK(c.completion_tokens > 0 && c.prompt_tokens > 0, "usage");
    printf("chat: %s [%u prompt + %u tokens, finish %d]\n", c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason);
    infer_completion_free(&c);
    CHECK(c.text == NULL, "freed text is nulled");
    infer_completion_free(&c); /* twice is harmless */

    /* The callback stops the generation. */
    struct collected part = {0};
    part.stop_after = 3;
    o.max_tokens = 64;
    CHECK(infer_chat(model, MESSAGES, &o, collect, &part, &c) == INFER_STATUS_STOPPED, "callback stop");
    CHECK(part.pieces == 3 && c.finish_reason == INFER_FINISH_REASON_CALLBACK, "stopped after 3 pieces (%d)", part.pieces);
    CHECK(c.text && strcmp(c.text, part.text) == 0, "the text so far is kept");
    infer_completion_free(&c);

    /* Completion without a template, and the length finish. */
    o.max_tokens = 5;
    CHECK(infer_complete(model, "Once upon a time", &o, NULL, NULL, &c) == INFER_STATUS_OK, "complete");
    CHECK(c.completion_tokens == 5 && c.finish_reason == INFER_FINISH_REASON_LENGTH, "5 tokens, length");
    infer_completion_free(&c);

    /* Bad requests. */
    CHECK(infer_chat(model, "not json", &o, NULL, NULL, &c) == INFER_STATUS_INVALID_ARGUMENT, "bad JSON");
    CHECK(strstr(infer_last_error(), "messages_json"), "the error names messages_json");
    CHECK(c.text == NULL, "nothing to free after a failure");
    CHECK(infer_chat(model, "[]", &o, NULL, NULL, &c) == INFER_STATUS_INVALID_ARGUMENT, "no messages");
    CHECK(infer_chat(model, "[{\"role\": \"user\", \"content\": \"\xc3\x28\"}]", &o, NULL, NULL, &c) == INFER_STATUS_INVALID_UTF8, "content not UTF-8");
    CHECK(infer_chat(model, NULL, &o, NULL, NULL, &c) == INFER_STATUS_NULL_ARGUMENT, "null messages");
    CHECK(infer_chat(model, MESSAGES, &o, NULL, NULL, NULL) == INFER_STATUS_NULL_ARGUMENT, "null out");
    CHECK(infer_chat(NULL, MESSAGES, &o, NULL, NULL, &c) == INFER_STATUS_NULL_ARGUMENT, "null model");
    CHECK(infer_chat((InferModel *)&got, MESSAGES, &o, NULL, NULL, &c) == INFER_STATUS_INVALID_HANDLE, "not a handle");
    InferGenerateOptions bad = o;
    bad.temperature = NAN;
    CHECK(infer_chat(model, MESSAGES, &bad, NULL, NULL, &c) == INFER_STATUS_INVALID_ARGUMENT, "NaN temperature");
    CHECK(strstr(infer_last_error(), "temperature"), "the error names temperature");
    bad = o;
    bad.top_p = 2;
    CHECK(infer_chat(model, MESSAGES, &bad, NULL, NULL, &c) == INFER_STATUS_INVALID_ARGUMENT, "top_p 2");

    /* Tokenize: ask for the length, then fill; detokenize gives the text back. */
    size_t n = 0;
    const char *sentence = "Hello, world! Caf\xc3\xa9 au lait.";
    CHECK(infer_tokenize(model, sentence, 0, NULL, 0, &n) == INFER_STATUS_BUFFER_TOO_SMALL && n > 0, "token count");
    uint32_t *ids = calloc(n, sizeof *ids);
    size_t n2 = 0;
    CHECK(infer_tokenize(model, sentence, 0, ids, n, &n2) == INFER_STATUS_OK && n2 == n, "tokenize");
    char *back = NULL;
    CHECK(infer_detokenize(model, ids, n, &back) == INFER_STATUS_OK && back && strcmp(back, sentence) == 0, "round trip: '%s'", back);
    infer_string_free(back);
    uint32_t outside = 4000000000u;
    CHECK(infer_detokenize(model, &outside, 1, &back) == INFER_STATUS_INVALID_ARGUMENT && back == NULL, "id outside the vocabulary");
    CHECK(infer_tokenize(model, "\xff", 0, ids, n, &n2) == INFER_STATUS_INVALID_UTF8, "text not UTF-8");
    free(ids);

    /* A chat model cannot embed: a clear error. */
    float v[1024];
    CHECK(infer_embed(model, "hi", v, 1024, &n) == INFER_STATUS_ENGINE, "embedding on a chat model");

    /* Threads on one model: the same greedy reply. */
    pthread_t threads[3];
    struct job jobs[3];
    for (int i = 0; i < 3; i++) {
        jobs[i].model = model;
        jobs[i].text[0] = 0;
        pthread_create(&threads[i], NULL, chat_job, &jobs[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        CHECK(jobs[i].status == INFER_STATUS_OK && strcmp(jobs[i].text, expected) == 0, "thread %d: '%s'", i, jobs[i].text);
    }

    /* Free, then every use of the freed handle is refused. */
    CHECK(infer_model_free(model) == INFER_STATUS_OK, "free");
    CHECK(infer_model_free(model) == INFER_STATUS_INVALID_HANDLE, "freed twice");
    CHECK(infer_chat(model, MESSAGES, &o, NULL, NULL, &c) == INFER_STATUS_INVALID_HANDLE, "use after free");
    CHECK(infer_model_free(NULL) == INFER_STATUS_OK, "free(NULL)");

    /* Embeddings: unit vectors, related sentences closer than unrelated ones. */
    InferModel *embedder = NULL;
    CHECK(infer_model_load(argv[2], NULL, &embedder) == INFER_STATUS_OK, "load %s", argv[2]);
    if (embedder) {
        size_t dim = 0;
        CHECK(infer_embed(embedder, "x", NULL, 0, &dim) == INFER_STATUS_BUFFER_TOO_SMALL && dim == 384, "dimension %zu", dim);
        float a[384], b[384], d[384];
        CHECK(infer_embed(embedder, "A cat sits on the mat.", a, 384, &dim) == INFER_STATUS_OK, "embed a");
        CHECK(infer_embed(embedder, "A kitten is sitting on a rug.", b, 384, &dim) == INFER_STATUS_OK, "embed b");
        CHECK(infer_embed(embedder, "Quarterly tax filings are due in April.", d, 384, &dim) == INFER_STATUS_OK, "embed d");
        double norm = 0, ab = 0, ad = 0;
        for (int i = 0; i < 384; i++) {
            norm += a[i] * a[i];
            ab += a[i] * b[i];
            ad += a[i] * d[i];
        }
        CHECK(fabs(norm - 1) < 1e-4, "unit length (%f)", norm);
        CHECK(ab > ad + 0.2, "related %f vs unrelated %f", ab, ad);
        printf("embed: cos(cat, kitten) %.3f, cos(cat, taxes) %.3f\n", ab, ad);
        CHECK(infer_model_free(embedder) == INFER_STATUS_OK, "free embedder");
    }

    if (failures) {
        fprintf(stderr, "capi: %d checks failed\n", failures);
        return 1;
    }
    printf("capi: all checks passed\n");
    return 0;
}
