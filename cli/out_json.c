/* out_json.c - hatchctl's JSON output: one compact object on stdout.
 * See hatchctl.h. One `comma` flag suffices because a value after a closed
 * container always needs one, and the first value inside a new container
 * never does. */
#include <stdio.h>

#include "hatchctl.h"

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. Strings
 * come off the wire unchecked, and invalid UTF-8 is not valid JSON. */
size_t hx_utf8_seq_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	/* overlong, surrogate, or past U+10FFFF */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return n;
}

static void json_string(const char *str)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	putchar('"');
	while (*s) {
		unsigned char c = *s;
		switch (c) {
		case '"':  fputs("\\\"", stdout); s++; continue;
		case '\\': fputs("\\\\", stdout); s++; continue;
		case '\b': fputs("\\b", stdout); s++; continue;
		case '\f': fputs("\\f", stdout); s++; continue;
		case '\n': fputs("\\n", stdout); s++; continue;
		case '\r': fputs("\\r", stdout); s++; continue;
		case '\t': fputs("\\t", stdout); s++; continue;
		}
		if (c < 0x20) {
			printf("\\u%04x", c);
			s++;
			continue;
		}
		size_t n = hx_utf8_seq_len(s);
		if (!n) {
			fputs("\\ufffd", stdout);
			s++;
			continue;
		}
		fwrite(s, 1, n, stdout);
		s += n;
	}
	putchar('"');
}

static void json_key(struct json *j, const char *key)
{
	if (j->comma)
		putchar(',');
	j->comma = true;
	if (key) {
		json_string(key);
		putchar(':');
	}
}

void json_open(struct json *j, const char *key, char bracket)
{
	json_key(j, key);
	putchar(bracket);
	j->comma = false;
}

void json_close(struct json *j, char bracket)
{
	putchar(bracket);
	j->comma = true;
}

void json_u64(struct json *j, const char *key, uint64_t v)
{
	json_key(j, key);
	printf("%llu", (unsigned long long)v);
}

void json_i64(struct json *j, const char *key, int64_t v)
{
	json_key(j, key);
	printf("%lld", (long long)v);
}

void json_bool(struct json *j, const char *key, bool v)
{
	json_key(j, key);
	fputs(v ? "true" : "false", stdout);
}

void json_str(struct json *j, const char *key, const char *v)
{
	json_key(j, key);
	json_string(v);
}
