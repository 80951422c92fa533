/*
 * OATH token seed files (common/tokenfile.c, tokenfile_pskc.c): CSV in every
 * shape the header allows and every error it names, PSKC plain and
 * encrypted (RFC 6030 Figure 7 as the vector: passphrase "qwerty", secret
 * "12345678901234567890"), our own PSKC and CSV writers read back, and the
 * refusals that keep a hostile file harmless (DTDs, altered ciphertext, a
 * wrong or missing passphrase). A failed read must leave the set as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"
#include "tokenfile.h"

static const unsigned char rfc_seed[] = "12345678901234567890";

/* RFC 6030 Figure 7, as published (PBKDF2, AES-128-CBC, HMAC-SHA1; "qwerty"). */
static const char figure7[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<pskc:KeyContainer\n"
    "  xmlns:pskc=\"urn:ietf:params:xml:ns:keyprov:pskc\"\n"
    "  xmlns:xenc11=\"http://www.w3.org/2009/xmlenc11#\"\n"
    "  xmlns:pkcs5=\n"
    "  \"http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#\"\n"
    "  xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\" Version=\"1.0\">\n"
    "    <pskc:EncryptionKey>\n"
    "        <xenc11:DerivedKey>\n"
    "            <xenc11:KeyDerivationMethod\n"
    "              Algorithm=\n"
    " \"http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2\">\n"
    "                <pkcs5:PBKDF2-params>\n"
    "                    <Salt>\n"
    "                        <Specified>Ej7/PEpyEpw=</Specified>\n"
    "                    </Salt>\n"
    "                    <IterationCount>1000</IterationCount>\n"
    "                    <KeyLength>16</KeyLength>\n"
    "                    <PRF/>\n"
    "                </pkcs5:PBKDF2-params>\n"
    "            </xenc11:KeyDerivationMethod>\n"
    "            <xenc:ReferenceList>\n"
    "                <xenc:DataReference URI=\"#ED\"/>\n"
    "            </xenc:ReferenceList>\n"
    "            <xenc11:MasterKeyName>My Password 1</xenc11:MasterKeyName>\n"
    "        </xenc11:DerivedKey>\n"
    "    </pskc:EncryptionKey>\n"
    "    <pskc:MACMethod\n"
    "        Algorithm=\"http://www.w3.org/2000/09/xmldsig#hmac-sha1\">\n"
    "        <pskc:MACKey>\n"
    "            <xenc:EncryptionMethod\n"
    "            Algorithm=\"http://www.w3.org/2001/04/xmlenc#aes128-cbc\"/>\n"
    "            <xenc:CipherData>\n"
    "                <xenc:CipherValue>\n"
    "2GTTnLwM3I4e5IO5FkufoOEiOhNj91fhKRQBtBJYluUDsPOLTfUvoU2dStyOwYZx\n"
    "                </xenc:CipherValue>\n"
    "            </xenc:CipherData>\n"
    "        </pskc:MACKey>\n"
    "    </pskc:MACMethod>\n"
    "    <pskc:KeyPackage>\n"
    "        <pskc:DeviceInfo>\n"
    "            <pskc:Manufacturer>TokenVendorAcme</pskc:Manufacturer>\n"
    "            <pskc:SerialNo>987654321</pskc:SerialNo>\n"
    "        </pskc:DeviceInfo>\n"
    "        <pskc:CryptoModuleInfo>\n"
    "            <pskc:Id>CM_ID_001</pskc:Id>\n"
    "        </pskc:CryptoModuleInfo>\n"
    "        <pskc:Key Algorithm=\n"
    "        \"urn:ietf:params:xml:ns:keyprov:pskc:hotp\" Id=\"123456\">\n"
    "            <pskc:Issuer>Example-Issuer</pskc:Issuer>\n"
    "            <pskc:AlgorithmParameters>\n"
    "                <pskc:ResponseFormat Length=\"8\" Encoding=\"DECIMAL\"/>\n"
    "            </pskc:AlgorithmParameters>\n"
    "            <pskc:Data>\n"
    "                <pskc:Secret>\n"
    "                <pskc:EncryptedValue Id=\"ED\">\n"
    "                    <xenc:EncryptionMethod\n"
    "                        Algorithm=\n"
    "\"http://www.w3.org/2001/04/xmlenc#aes128-cbc\"/>\n"
    "                        <xenc:CipherData>\n"
    "                            <xenc:CipherValue>\n"
    "      oTvo+S22nsmS2Z/RtcoF8Hfh+jzMe0RkiafpoDpnoZTjPYZu6V+A4aEn032yCr4f\n"
    "                        </xenc:CipherValue>\n"
    "                    </xenc:CipherData>\n"
    "                    </pskc:EncryptedValue>\n"
    "                    <pskc:ValueMAC>LP6xMvjtypbfT9PdkJhBZ+D6O4w=\n"
    "                    </pskc:ValueMAC>\n"
    "                </pskc:Secret>\n"
    "            </pskc:Data>\n"
    "        </pskc:Key>\n"
    "    </pskc:KeyPackage>\n"
    "</pskc:KeyContainer>\n";

/*
 * Written by python-pskc 1.2 (Debian's python3-pskc) with passphrase "qwerty":
 * xenc11:PBKDF2-params, the PRF as text, AES-256-CBC and HMAC-SHA256.
 */
static const char python_pskc[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<pskc:KeyContainer xmlns:pskc=\"urn:ietf:params:xml:ns:keyprov:pskc\" "
    "xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\" "
    "xmlns:xenc11=\"http://www.w3.org/2009/xmlenc11#\" Version=\"1.0\">\n"
    " <pskc:EncryptionKey>\n"
    "  <xenc11:DerivedKey>\n"
    "   <xenc11:KeyDerivationMethod "
    "Algorithm=\"http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2\">\n"
    "    <xenc11:PBKDF2-params>\n"
    "     <Salt>\n"
    "      <Specified>ddh4FtQDOQY2U0uVvQL5bg==</Specified>\n"
    "     </Salt>\n"
    "     <IterationCount>1000</IterationCount>\n"
    "     <KeyLength>32</KeyLength>\n"
    "     <PRF>http://www.w3.org/2001/04/xmldsig-more#hmac-sha256</PRF>\n"
    "    </xenc11:PBKDF2-params>\n"
    "   </xenc11:KeyDerivationMethod>\n"
    "  </xenc11:DerivedKey>\n"
    " </pskc:EncryptionKey>\n"
    " <pskc:MACMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#hmac-sha256\">\n"
    "  <pskc:MACKey>\n"
    "   <xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#aes256-cbc\"/>\n"
    "   <xenc:CipherData>\n"
    "    "
    "<xenc:CipherValue>BxfWuzariUb0kooWJd8VlzDIKJsevwkFNOKh5YNM0nVdbmpuVXogiZnNVbKmFdhc</"
    "xenc:CipherValue>\n"
    "   </xenc:CipherData>\n"
    "  </pskc:MACKey>\n"
    " </pskc:MACMethod>\n"
    " <pskc:KeyPackage>\n"
    "  <pskc:DeviceInfo>\n"
    "   <pskc:SerialNo>PY-1</pskc:SerialNo>\n"
    "  </pskc:DeviceInfo>\n"
    "  <pskc:Key Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:totp\" Id=\"py1\">\n"
    "   <pskc:AlgorithmParameters>\n"
    "    <pskc:ResponseFormat Length=\"6\"/>\n"
    "   </pskc:AlgorithmParameters>\n"
    "   <pskc:Data>\n"
    "    <pskc:Secret>\n"
    "     <pskc:EncryptedValue>\n"
    "      <xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#aes256-cbc\"/>\n"
    "      <xenc:CipherData>\n"
    "       "
    "<xenc:CipherValue>2X0RlLDRLe+FP7DPvKYFRuCkCF23Ft313hSRS6ACHRtc8Ih+sgwQxfR6VN2DWACz</"
    "xenc:CipherValue>\n"
    "      </xenc:CipherData>\n"
    "     </pskc:EncryptedValue>\n"
    "     <pskc:ValueMAC>yCDw6kmLCjY8W1R30qYyCop6kYNINVLftxJLJBnzfZA=</pskc:ValueMAC>\n"
    "    </pskc:Secret>\n"
    "    <pskc:TimeInterval>\n"
    "     <pskc:PlainValue>30</pskc:PlainValue>\n"
    "    </pskc:TimeInterval>\n"
    "   </pskc:Data>\n"
    "  </pskc:Key>\n"
    " </pskc:KeyPackage>\n"
    " <pskc:KeyPackage>\n"
    "  <pskc:DeviceInfo>\n"
    "   <pskc:SerialNo>PY-2</pskc:SerialNo>\n"
    "  </pskc:DeviceInfo>\n"
    "  <pskc:Key Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\" Id=\"py2\">\n"
    "   <pskc:AlgorithmParameters>\n"
    "    <pskc:ResponseFormat Length=\"8\"/>\n"
    "   </pskc:AlgorithmParameters>\n"
    "   <pskc:Data>\n"
    "    <pskc:Secret>\n"
    "     <pskc:EncryptedValue>\n"
    "      <xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#aes256-cbc\"/>\n"
    "      <xenc:CipherData>\n"
    "       "
    "<xenc:CipherValue>uw1NUSfy3GjP+pUPHFRfgZQ+J4jvq5v+6BG4EtqPzQ6s7yivqGwTxgJfLME+g8cg</"
    "xenc:CipherValue>\n"
    "      </xenc:CipherData>\n"
    "     </pskc:EncryptedValue>\n"
    "     <pskc:ValueMAC>SiuAY5fONeOVgKBg6eJZ6wRlpNTqmE2lTUVhCBFu4hw=</pskc:ValueMAC>\n"
    "    </pskc:Secret>\n"
    "    <pskc:Counter>\n"
    "     <pskc:PlainValue>5</pskc:PlainValue>\n"
    "    </pskc:Counter>\n"
    "   </pskc:Data>\n"
    "  </pskc:Key>\n"
    " </pskc:KeyPackage>\n"
    "</pskc:KeyContainer>\n";

/* A set holding one marker record, so a failed read can be seen to leave it alone. */
static void set_with_marker(struct token_set *s)
{
    struct token_rec r = { .serial = "MARKER",
                           .kind = TOKEN_TOTP,
                           .algorithm = "SHA1",
                           .digits = 6,
                           .period = 30,
                           .seed_len = 10 };

    memset(s, 0, sizeof(*s));
    assert_int_equal(token_set_add(s, &r, NULL), 0);
}

static int read_csv(const char *text, struct token_set *s, char **err)
{
    return tokenfile_read_csv(text, strlen(text), s, err);
}

static int read_pskc(const char *text, const char *pass, struct token_set *s, char **err)
{
    return tokenfile_read_pskc(text, strlen(text), pass, s, err);
}

/* Replaces the first <from> in <text> with <to>; the result lives until the fourth call after. */
static const char *edit(const char *text, const char *from, const char *to)
{
    static char bufs[4][8192];
    static size_t next;
    char *out = bufs[next++ % 4];
    const char *at = strstr(text, from);

    assert_non_null(at);
    assert_true(strlen(text) - strlen(from) + strlen(to) < sizeof(bufs[0]));
    snprintf(out, sizeof(bufs[0]), "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

/* ---- CSV */

static void test_csv_hex_base32_defaults(void **state)
{
    struct token_set s = { 0 };
    char *err = NULL;

    (void)state;
    assert_int_equal(read_csv("serial,type,seed\n"
                              "T1,totp,3132333435363738393031323334353637383930\n"
                              "T2,HOTP,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"
                              "T3,totp,gezd gnbv gy3t qojq gezd gnbv gy3t qojq\n",
                              &s, &err),
                     0);
    assert_null(err);
    assert_int_equal(s.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(s.v[i].seed_len, 20);
        assert_memory_equal(s.v[i].seed, rfc_seed, 20);
        assert_int_equal(s.v[i].digits, 6);
        assert_string_equal(s.v[i].algorithm, "SHA1");
        assert_string_equal(s.v[i].user, "");
    }
    assert_string_equal(s.v[0].serial, "T1");
    assert_int_equal(s.v[0].kind, TOKEN_TOTP);
    assert_int_equal(s.v[0].period, 30);
    assert_int_equal(s.v[1].kind, TOKEN_HOTP);
    assert_int_equal(s.v[1].counter, 0);
    token_set_free(&s);
    assert_null(s.v);
    assert_int_equal(s.n, 0);
}

static void test_csv_all_columns_encoding(void **state)
{
    struct token_set s = { 0 };
    char *err = NULL;

    (void)state;
    /* any order, any case, synonyms; "AAAA..." is hex unless the encoding says base32 */
    assert_int_equal(read_csv("User,Algorithm,Counter,PERIOD,digits,kind,Encoding,secret,serial\n"
                              "alice,sha256,,60,8,totp,,AAAAAAAAAAAAAAAAAAAA,A1\n"
                              "bob,SHA512,42,,7,hotp,base32,AAAAAAAAAAAAAAAAAAAA,A2\n",
                              &s, &err),
                     0);
    assert_null(err);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[0].user, "alice");
    assert_string_equal(s.v[0].algorithm, "SHA256");
    assert_int_equal(s.v[0].period, 60);
    assert_int_equal(s.v[0].digits, 8);
    assert_int_equal(s.v[0].seed_len, 10);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(s.v[0].seed[i], 0xaa);
    assert_string_equal(s.v[1].algorithm, "SHA512");
    assert_int_equal(s.v[1].kind, TOKEN_HOTP);
    assert_int_equal(s.v[1].counter, 42);
    assert_int_equal(s.v[1].digits, 7);
    assert_int_equal(s.v[1].seed_len, 12); /* 20 base32 characters */
    for (size_t i = 0; i < 12; i++)
        assert_int_equal(s.v[1].seed[i], 0);
    token_set_free(&s);
}

static void test_csv_quotes_bom_crlf(void **state)
{
    struct token_set s = { 0 };
    char *err = NULL;

    (void)state;
    assert_int_equal(read_csv("\xef\xbb\xbf"
                              "serial,type,seed,user\r\n"
                              "\r\n"
                              "\"Q,1\",totp,  3132333435363738393031323334353637383930  ,\"Doe, "
                              "\"\"J\"\"\"\r\n"
                              "\n"
                              "  Q2 ,\"hotp\",\"3132333435363738393031323334353637383930\",  "
                              "\"J\xc3\xb6rg\"  \r\n",
                              &s, &err),
                     0);
    assert_null(err);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[0].serial, "Q,1");
    assert_string_equal(s.v[0].user, "Doe, \"J\"");
    assert_memory_equal(s.v[0].seed, rfc_seed, 20);
    assert_string_equal(s.v[1].serial, "Q2");
    assert_int_equal(s.v[1].kind, TOKEN_HOTP);
    assert_string_equal(s.v[1].user, "J\xc3\xb6rg");
    token_set_free(&s);
}

#define SEED20 "3132333435363738393031323334353637383930"

static const struct {
    const char *csv, *error;
} csv_errors[] = {
    { "", "no header row" },
    { "serial,type,seed,colour\nT1,totp," SEED20 ",red\n", "line 1: unknown column \"colour\"" },
    { "serial,type\nT1,totp\n", "line 1: the header must name the serial, seed and type" },
    { "serial,type,seed,secret\n", "line 1: the seed column appears twice" },
    { "serial,type,seed\n,totp," SEED20 "\n", "line 2: the serial is empty" },
    { "serial,type,seed\nT1,totp,\n", "line 2: the seed is empty" },
    { "serial,type,seed\nT1,," SEED20 "\n", "line 2: the type is empty" },
    { "serial,type,seed\nT1,motp," SEED20 "\n", "line 2: the type must be totp or hotp" },
    { "serial,type,seed,digits\nT1,totp," SEED20 ",9\n",
      "line 2: digits must be 6, 7 or 8, not 9" },
    { "serial,type,seed,digits\nT1,totp," SEED20 ",six\n",
      "line 2: digits must be a whole number" },
    { "serial,type,seed,period\nT1,totp," SEED20 ",5\n",
      "line 2: the period must be 10 to 300 seconds, not 5" },
    { "serial,type,seed,counter\nT1,hotp," SEED20 ",-1\n",
      "line 2: the counter must be a whole number" },
    { "serial,type,seed\nT1,totp,31323334\n", "line 2: the seed is 4 bytes; it must be 10 to 64" },
    { "serial,type,seed\nT1,totp," SEED20 SEED20 SEED20 SEED20 "3132333435\n",
      "line 2: the seed is 85 bytes; it must be 10 to 64" },
    { "serial,type,seed\nT1,totp,!!!!!!!!!!!!!!!!\n",
      "line 2: the seed is neither hex nor base32" },
    { "serial,type,seed,encoding\nT1,totp,GEZDGNBVGY3TQOJQ,hex\n", "line 2: the seed is not hex" },
    { "serial,type,seed,encoding\nT1,totp," SEED20 ",base64\n",
      "line 2: the encoding must be hex or base32" },
    { "serial,type,seed,algorithm\nT1,totp," SEED20 ",MD5\n",
      "line 2: the algorithm must be SHA1, SHA256 or SHA512" },
    { "serial,type,seed\nT 1,totp," SEED20 "\n",
      "line 2: the serial must be UTF-8 text without spaces" },
    /* Unicode spaces look like a space in a list: no-break, ideographic, zero-width, BOM */
    { "serial,type,seed\n\xc2\xa0T1,totp," SEED20 "\n",
      "line 2: the serial must be UTF-8 text without spaces" },
    { "serial,type,seed\nT\xe3\x80\x80"
      "1,totp," SEED20 "\n",
      "line 2: the serial must be UTF-8 text without spaces" },
    { "serial,type,seed\nT1\xe2\x80\x8b,totp," SEED20 "\n",
      "line 2: the serial must be UTF-8 text without spaces" },
    { "serial,type,seed\n\xef\xbb\xbfT1,totp," SEED20 "\n",
      "line 2: the serial must be UTF-8 text without spaces" },
    /* the schema's counter is a bigint */
    { "serial,type,seed,counter\nT1,hotp," SEED20 ",9223372036854775808\n",
      "line 2: the counter is larger than 9223372036854775807" },
    { "serial,type,seed\nT1,totp," SEED20 "\nT2,totp," SEED20 "\n\nT1,hotp," SEED20 "\n",
      "line 5: serial \"T1\" appears twice in the file (first on line 2)" },
    { "serial,type,seed\nT1,totp\n", "line 2: 2 fields, but the header names 3 columns" },
    { "serial,type,seed\nT1,totp,\"" SEED20 "\n",
      "line 2: field 3 has a quote that is not closed" },
    { "serial,type,seed\nT1,totp,\"" SEED20 "\"x\n", "line 2: text after the closing quote" },
    { "serial,type,seed,user\nT1,totp," SEED20 ",\"a\nb\"\n",
      "line 2: the user is not UTF-8 text without control characters" },
    { "serial,type,seed,user\nT1,totp," SEED20 ",\xff\n",
      "line 2: the user is not UTF-8 text without control characters" },
};

static void test_csv_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(csv_errors) / sizeof(csv_errors[0]); i++) {
        struct token_set s;
        char *err = NULL;

        set_with_marker(&s);
        if (read_csv(csv_errors[i].csv, &s, &err) != -1 || !err ||
            !strstr(err, csv_errors[i].error))
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err ? err : "(none)",
                     csv_errors[i].error);
        /* read whole or not at all */
        assert_int_equal(s.n, 1);
        assert_string_equal(s.v[0].serial, "MARKER");
        free(err);
        token_set_free(&s);
    }
}

static void test_csv_nul_and_size(void **state)
{
    static const char text[] = "serial,type,seed\nT1,to\0tp," SEED20 "\n";
    struct token_set s = { 0 };
    char *err = NULL;

    (void)state;
    assert_int_equal(tokenfile_read_csv(text, sizeof(text) - 1, &s, &err), -1);
    assert_non_null(strstr(err, "line 2: a NUL byte"));
    free(err);
    err = NULL;
    assert_int_equal(tokenfile_read_csv(text, (size_t)TOKENFILE_MAX_BYTES + 1, &s, &err), -1);
    assert_non_null(strstr(err, "larger than"));
    free(err);
    assert_int_equal(s.n, 0);
}

static void fill(struct token_rec *r, const char *serial, enum token_kind kind, const char *user)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->serial, sizeof(r->serial), "%s", serial);
    r->kind = kind;
    snprintf(r->algorithm, sizeof(r->algorithm), "%s", kind == TOKEN_TOTP ? "SHA256" : "SHA1");
    r->digits = kind == TOKEN_TOTP ? 8 : 6;
    r->period = kind == TOKEN_TOTP ? 60 : 30;
    r->counter = kind == TOKEN_HOTP ? 123456789012ULL : 0;
    r->seed_len = kind == TOKEN_TOTP ? 32 : 20;
    for (size_t i = 0; i < r->seed_len; i++)
        r->seed[i] = (unsigned char)(i * 37 + 11);
    snprintf(r->user, sizeof(r->user), "%s", user);
}

static void assert_same(const struct token_rec *a, const struct token_rec *b)
{
    assert_string_equal(a->serial, b->serial);
    assert_int_equal(a->kind, b->kind);
    assert_string_equal(a->algorithm, b->algorithm);
    assert_int_equal(a->digits, b->digits);
    if (a->kind == TOKEN_TOTP)
        assert_int_equal(a->period, b->period);
    else
        assert_int_equal(a->counter, b->counter);
    assert_int_equal(a->seed_len, b->seed_len);
    assert_memory_equal(a->seed, b->seed, a->seed_len);
    assert_string_equal(a->user, b->user);
}

static void test_csv_write_read(void **state)
{
    static const char csv_header_row[] =
        "serial,type,seed,encoding,digits,period,counter,algorithm,user\r\n";
    struct token_set in = { 0 }, out = { 0 };
    struct token_rec r;
    char *text = NULL, *err = NULL;
    size_t len = 0;

    (void)state;
    fill(&r, "S,\"1\"", TOKEN_TOTP, "Doe, J\xc3\xb6rg");
    assert_int_equal(token_set_add(&in, &r, NULL), 0);
    fill(&r, "S2", TOKEN_HOTP, " padded ");
    assert_int_equal(token_set_add(&in, &r, NULL), 0);
    assert_int_equal(tokenfile_write_csv(&in, &text, &len, &err), 0);
    assert_int_equal(len, strlen(text));
    assert_true(strncmp(text, csv_header_row, strlen(csv_header_row)) == 0);
    assert_int_equal(tokenfile_detect(text, len), TOKENFILE_CSV);
    assert_int_equal(tokenfile_read_csv(text, len, &out, &err), 0);
    assert_int_equal(out.n, 2);
    assert_same(&in.v[0], &out.v[0]);
    assert_same(&in.v[1], &out.v[1]);
    free(text);
    /* a bad record is refused, not written */
    in.v[1].digits = 5;
    assert_int_equal(tokenfile_write_csv(&in, &text, &len, &err), -1);
    assert_non_null(strstr(err, "token 2: digits must be"));
    free(err);
    token_set_free(&in);
    token_set_free(&out);
}

/* ---- PSKC */

static const char plain_hotp[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<KeyContainer Version=\"1.0\" xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\">\n"
    "  <KeyPackage>\n"
    "    <DeviceInfo><Manufacturer>Acme</Manufacturer><SerialNo>H-1</SerialNo></DeviceInfo>\n"
    "    <Key Id=\"1\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\">\n"
    "      <AlgorithmParameters><ResponseFormat Length=\"8\" Encoding=\"DECIMAL\"/>"
    "</AlgorithmParameters>\n"
    "      <Data>\n"
    "        <Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1\nNjc4OTA=</PlainValue></Secret>\n"
    "        <Counter><PlainValue> 7 </PlainValue></Counter>\n"
    "      </Data>\n"
    "      <UserId>alice</UserId>\n"
    "    </Key>\n"
    "  </KeyPackage>\n"
    "</KeyContainer>\n";

/* Another prefix, TOTP in the '#' spelling, the user under DeviceInfo, a Suite. */
static const char plain_totp[] =
    "<p:KeyContainer xmlns:p=\"urn:ietf:params:xml:ns:keyprov:pskc\" Version=\"1.0\">\n"
    "  <p:KeyPackage>\n"
    "    <p:DeviceInfo><p:SerialNo>T-1</p:SerialNo><p:UserId>bob</p:UserId></p:DeviceInfo>\n"
    "    <p:Key Id=\"k\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc#totp\">\n"
    "      <p:AlgorithmParameters><p:Suite>HMAC-SHA256</p:Suite>"
    "<p:ResponseFormat Length=\"6\"/></p:AlgorithmParameters>\n"
    "      <p:Data>\n"
    "        <p:Secret><p:PlainValue><![CDATA[MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=]]></p:PlainValue>"
    "</p:Secret>\n"
    "        <p:Time><p:PlainValue>0</p:PlainValue></p:Time>\n"
    "        <p:TimeInterval><p:PlainValue>60</p:PlainValue></p:TimeInterval>\n"
    "      </p:Data>\n"
    "    </p:Key>\n"
    "  </p:KeyPackage>\n"
    "  <p:KeyPackage>\n"
    "    <p:Key Id=\"FromId\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:totp\">\n"
    "      <p:Data><p:Secret><p:PlainValue>MTIzNDU2Nzg5MA==</p:PlainValue></p:Secret></p:Data>\n"
    "    </p:Key>\n"
    "  </p:KeyPackage>\n"
    "</p:KeyContainer>\n";

static void test_pskc_plain(void **state)
{
    struct token_set s = { 0 };
    char *err = NULL;

    (void)state;
    assert_int_equal(tokenfile_detect(plain_hotp, strlen(plain_hotp)), TOKENFILE_PSKC);
    assert_int_equal(read_pskc(plain_hotp, NULL, &s, &err), 0);
    assert_null(err);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.v[0].serial, "H-1");
    assert_int_equal(s.v[0].kind, TOKEN_HOTP);
    assert_int_equal(s.v[0].digits, 8);
    assert_int_equal(s.v[0].counter, 7);
    assert_string_equal(s.v[0].user, "alice");
    assert_int_equal(s.v[0].seed_len, 20);
    assert_memory_equal(s.v[0].seed, rfc_seed, 20);
    assert_int_equal(read_pskc(plain_totp, "ignored", &s, &err), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.v[1].serial, "T-1");
    assert_int_equal(s.v[1].kind, TOKEN_TOTP);
    assert_int_equal(s.v[1].period, 60);
    assert_int_equal(s.v[1].digits, 6);
    assert_string_equal(s.v[1].algorithm, "SHA256");
    assert_string_equal(s.v[1].user, "bob");
    assert_memory_equal(s.v[1].seed, rfc_seed, 20);
    /* no DeviceInfo: the Key's Id is the serial; defaults apply */
    assert_string_equal(s.v[2].serial, "FromId");
    assert_int_equal(s.v[2].period, 30);
    assert_int_equal(s.v[2].digits, 6);
    assert_string_equal(s.v[2].algorithm, "SHA1");
    assert_int_equal(s.v[2].seed_len, 10);
    token_set_free(&s);
}

static void test_pskc_rfc6030_figure7(void **state)
{
    struct token_set s = { 0 };
    char *err = NULL;

    (void)state;
    assert_int_equal(read_pskc(figure7, "qwerty", &s, &err), 0);
    assert_null(err);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.v[0].serial, "987654321");
    assert_int_equal(s.v[0].kind, TOKEN_HOTP);
    assert_int_equal(s.v[0].digits, 8);
    assert_int_equal(s.v[0].counter, 0);
    assert_int_equal(s.v[0].seed_len, 20);
    assert_memory_equal(s.v[0].seed, rfc_seed, 20);
    token_set_free(&s);
}

static void expect_pskc_error(const char *text, const char *pass, const char *want)
{
    struct token_set s;
    char *err = NULL;

    /* a MAC that does not match has its own return value, the rest -1 */
    int want_rc = strstr(want, "wrong passphrase") || strstr(want, "MAC of the secret")
                      ? TOKENFILE_WRONG_PASSPHRASE
                      : -1;

    set_with_marker(&s);
    if (read_pskc(text, pass, &s, &err) != want_rc || !err || !strstr(err, want))
        fail_msg("got \"%s\", want \"%s\"", err ? err : "(none)", want);
    assert_int_equal(s.n, 1);
    free(err);
    token_set_free(&s);
}

static void test_pskc_figure7_refusals(void **state)
{
    (void)state;
    expect_pskc_error(figure7, "qwertz", "wrong passphrase, or the file was altered");
    expect_pskc_error(figure7, NULL,
                      "key package 1 (serial 987654321): the secret is encrypted: a passphrase "
                      "is needed");
    /* one flipped bit of the secret's ciphertext: the MAC catches it */
    expect_pskc_error(edit(figure7, "oTvo+S22ns", "oTvo+S22nt"), "qwerty",
                      "key package 1 (serial 987654321): the MAC of the secret does not match: "
                      "wrong passphrase, or the file was altered");
    expect_pskc_error(edit(figure7, "LP6xMvjtyp", "LP6xMvjtyq"), "qwerty",
                      "the MAC of the secret does not match");
    expect_pskc_error(edit(figure7,
                           "<pskc:ValueMAC>LP6xMvjtypbfT9PdkJhBZ+D6O4w=\n"
                           "                    </pskc:ValueMAC>",
                           ""),
                      "qwerty", "the encrypted secret has no ValueMAC");
    expect_pskc_error(edit(figure7, "2GTTnLwM3I4e5IO5", "2GTTnLwM3I4e5IO6"), "qwerty",
                      "wrong passphrase, or the file was altered");
    expect_pskc_error(edit(figure7, "<IterationCount>1000<", "<IterationCount>99999999<"), "qwerty",
                      "EncryptionKey: the PBKDF2 IterationCount must be");
    expect_pskc_error(edit(figure7, "xmlenc#aes128-cbc\"/>\n            <xenc:CipherData>",
                           "xmlenc#kw-aes128\"/>\n            <xenc:CipherData>"),
                      "qwerty", "only AES-128/192/256-CBC");
}

static void test_pskc_python_pskc(void **state)
{
    struct token_set s = { 0 };
    char *err = NULL;

    (void)state;
    assert_int_equal(read_pskc(python_pskc, "qwerty", &s, &err), 0);
    assert_null(err);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[0].serial, "PY-1");
    assert_int_equal(s.v[0].kind, TOKEN_TOTP);
    assert_int_equal(s.v[0].period, 30);
    assert_memory_equal(s.v[0].seed, rfc_seed, 20);
    assert_string_equal(s.v[1].serial, "PY-2");
    assert_int_equal(s.v[1].kind, TOKEN_HOTP);
    assert_int_equal(s.v[1].counter, 5);
    assert_int_equal(s.v[1].digits, 8);
    assert_int_equal(s.v[1].seed_len, 20);
    assert_memory_equal(s.v[1].seed, "abcdefghijklmnopqrst", 20);
    token_set_free(&s);
    expect_pskc_error(python_pskc, "qwertz", "wrong passphrase, or the file was altered");
    /* the PRF decides the key: read as the default HMAC-SHA1, the MAC key does not decrypt */
    expect_pskc_error(
        edit(python_pskc, "<PRF>http://www.w3.org/2001/04/xmldsig-more#hmac-sha256</PRF>", ""),
        "qwerty", "wrong passphrase, or the file was altered");
}

static void test_pskc_hostile(void **state)
{
    (void)state;
    /* an internal subset with an entity, and an external entity: refused before expansion */
    expect_pskc_error("<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY a \"aaaaaaaa\">"
                      "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]>\n"
                      "<KeyContainer xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\">&b;"
                      "</KeyContainer>",
                      NULL, "document type declaration (DTD), which is not allowed");
    expect_pskc_error("<?xml version=\"1.0\"?>\n<!DOCTYPE r SYSTEM \"file:///etc/passwd\">\n"
                      "<KeyContainer xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\"/>",
                      NULL, "not allowed");
    expect_pskc_error("<KeyContainer xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\">&xxe;"
                      "</KeyContainer>",
                      NULL, "not well-formed XML: line 1");
    expect_pskc_error("<KeyContainer xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\">\n<KeyPackage>",
                      NULL, "not well-formed XML: line");
    expect_pskc_error("<KeyContainer/>", NULL, "not a PSKC KeyContainer");
    expect_pskc_error(edit(plain_hotp, "Version=\"1.0\"", "Version=\"2\""), NULL,
                      "version is not 1.0");
}

static void test_pskc_hotp_errors(void **state)
{
    (void)state;
    /* RFC 6030 Figure 2's secret is "1234": too short for an OATH token */
    expect_pskc_error(edit(plain_hotp, "MTIzNDU2Nzg5MDEyMzQ1\nNjc4OTA=", "MTIzNA=="), NULL,
                      "key package 1 (serial H-1): the secret is 4 bytes; it must be 10 to 64");
    expect_pskc_error(edit(plain_hotp, "MTIzNDU2Nzg5MDEyMzQ1\nNjc4OTA=", "MTIz*NA=="), NULL,
                      "the secret's PlainValue is not valid base64");
    expect_pskc_error(edit(plain_hotp, "pskc:hotp", "pskc:ocra"), NULL,
                      "key package 1 (serial H-1): the key algorithm "
                      "urn:ietf:params:xml:ns:keyprov:pskc:ocra is neither HOTP nor TOTP");
    expect_pskc_error(edit(plain_hotp, "Length=\"8\"", "Length=\"10\""), NULL,
                      "digits must be 6, 7 or 8, not 10");
    expect_pskc_error(edit(plain_hotp, "Encoding=\"DECIMAL\"", "Encoding=\"HEXADECIMAL\""), NULL,
                      "Encoding must be DECIMAL");
    expect_pskc_error(edit(plain_hotp, "<PlainValue> 7 <", "<PlainValue>-7<"), NULL,
                      "key package 1 (serial H-1): Data/Counter must be a whole number");
}

static void test_pskc_totp_errors(void **state)
{
    (void)state;
    expect_pskc_error(edit(plain_totp, "<p:Time><p:PlainValue>0<", "<p:Time><p:PlainValue>5<"),
                      NULL, "key package 1 (serial T-1): Data/Time (T0) is 5; only 0");
    expect_pskc_error(edit(plain_totp, ">60<", ">301<"), NULL,
                      "the period must be 10 to 300 seconds, not 301");
    expect_pskc_error(edit(plain_totp, "HMAC-SHA256", "MD5"), NULL,
                      "AlgorithmParameters/Suite MD5 is not SHA1");
    expect_pskc_error(edit(plain_totp, "Id=\"FromId\"", "Id=\"T-1\""), NULL,
                      "key package 2: serial \"T-1\" appears twice in the file (first in key "
                      "package 1)");
    expect_pskc_error(edit(plain_totp, "Id=\"FromId\"", ""), NULL,
                      "key package 2: no serial (DeviceInfo/SerialNo)");
    expect_pskc_error(edit(plain_totp, "<p:UserId>bob</p:UserId>", "<p:UserId>b\tb</p:UserId>"),
                      NULL, "the user is not UTF-8 text");
    expect_pskc_error(edit(plain_totp,
                           "<p:Data><p:Secret><p:PlainValue>MTIzNDU2Nzg5MA==</p:"
                           "PlainValue></p:Secret></p:Data>",
                           ""),
                      NULL, "key package 2 (serial FromId): the key has no Data/Secret");
}

static void test_pskc_encryption_errors(void **state)
{
    const char *text;

    (void)state;
    /* an encrypted secret with no MACMethod: nothing would catch a wrong passphrase */
    text = edit(figure7, "<pskc:MACMethod\n", "<pskc:NoMACMethod\n");
    text = edit(text, "</pskc:MACMethod>", "</pskc:NoMACMethod>");
    expect_pskc_error(text, "qwerty", "MACMethod");
    /* a CipherValue that is not an IV and whole AES blocks (40 bytes) */
    expect_pskc_error(edit(figure7,
                           "oTvo+S22nsmS2Z/RtcoF8Hfh+jzMe0RkiafpoDpnoZTjPYZu6V+A4aEn032yCr4f",
                           "oTvo+S22nsmS2Z/RtcoF8Hfh+jzMe0RkiafpoDpnoZTjPYZu6V+A"),
                      "qwerty", "key package 1 (serial 987654321)");
    /* a KeyLength that is not the cipher's */
    expect_pskc_error(edit(figure7, "<KeyLength>16<", "<KeyLength>32<"), "qwerty",
                      "needs a 16-byte key, but the derived key is 32 bytes");
    /* the schema's counter is a bigint */
    expect_pskc_error(edit(plain_hotp, "<PlainValue> 7 <", "<PlainValue>9223372036854775808<"),
                      NULL, "key package 1 (serial H-1): the counter is larger than");
}

/* No MACKey: the MAC is keyed with the encryption key (made with Python: PBKDF2, AES, HMAC). */
static void test_pskc_no_mackey(void **state)
{
    struct token_set s = { 0 };
    const char *text;
    char *err = NULL;

    (void)state;
    text = edit(figure7,
                "<pskc:MACKey>\n"
                "            <xenc:EncryptionMethod\n"
                "            Algorithm=\"http://www.w3.org/2001/04/xmlenc#aes128-cbc\"/>\n"
                "            <xenc:CipherData>\n"
                "                <xenc:CipherValue>\n"
                "2GTTnLwM3I4e5IO5FkufoOEiOhNj91fhKRQBtBJYluUDsPOLTfUvoU2dStyOwYZx\n"
                "                </xenc:CipherValue>\n"
                "            </xenc:CipherData>\n"
                "        </pskc:MACKey>",
                "");
    text = edit(text, "oTvo+S22nsmS2Z/RtcoF8Hfh+jzMe0RkiafpoDpnoZTjPYZu6V+A4aEn032yCr4f",
                "AAECAwQFBgcICQoLDA0OD1L07AoK4W/Ganirci2w7kC7DeawRppWuX1dTSuTOM4z");
    text = edit(text, "LP6xMvjtypbfT9PdkJhBZ+D6O4w=", "PVysepaT9PzVcsEpca0bquIQnYo=");
    assert_int_equal(read_pskc(text, "qwerty", &s, &err), 0);
    assert_null(err);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.v[0].seed_len, 20);
    assert_memory_equal(s.v[0].seed, rfc_seed, 20);
    token_set_free(&s);
    expect_pskc_error(edit(text, "PVysepaT9PzVcsEpca0bquIQnYo=", "QVysepaT9PzVcsEpca0bquIQnYo="),
                      "qwerty", "the MAC of the secret does not match");
}

/* libxml2 keeps a whole tree: the size and the node count are bounded before it parses. */
static void test_pskc_bounds(void **state)
{
    static const char head[] = "<KeyContainer Version=\"1.0\" "
                               "xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\">";
    size_t n = TOKENFILE_PSKC_MAX_NODES + 1, len = sizeof(head) - 1 + 4 * n;
    struct token_set s = { 0 };
    char *text = malloc(TOKENFILE_PSKC_MAX_BYTES + 2), *err = NULL;

    (void)state;
    assert_non_null(text);
    memcpy(text, head, sizeof(head) - 1);
    for (size_t i = 0; i < n; i++)
        memcpy(text + sizeof(head) - 1 + 4 * i, "<a/>", 4);
    text[len] = '\0';
    assert_int_equal(tokenfile_read_pskc(text, len, NULL, &s, &err), -1);
    assert_non_null(strstr(err, "more than 1000000 elements and attributes"));
    free(err);
    err = NULL;
    memset(text + len, ' ', TOKENFILE_PSKC_MAX_BYTES + 1 - len);
    assert_int_equal(tokenfile_read_pskc(text, TOKENFILE_PSKC_MAX_BYTES + 1, NULL, &s, &err), -1);
    assert_non_null(strstr(err, "larger than 16 MiB"));
    free(err);
    assert_int_equal(s.n, 0);
    free(text);
}

static void test_pskc_preshared(void **state)
{
    const char *text;

    (void)state;
    text = edit(figure7, "<xenc11:DerivedKey>", "<ds:KeyName>Pre-shared</ds:KeyName><x>");
    text = edit(text, "</xenc11:DerivedKey>", "</x>");
    text = edit(text, "xmlns:xenc=", "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" xmlns:xenc=");
    expect_pskc_error(text, "qwerty", "pre-shared key (KeyName)");
}

static void test_pskc_write_read(void **state)
{
    struct token_set in = { 0 }, out = { 0 };
    struct token_rec r;
    char *text = NULL, *err = NULL, b64[64];
    size_t len = 0;

    (void)state;
    fill(&r, "T<&>\"'1", TOKEN_TOTP,
         "Ren\xc3\xa9"
         "e & <Co>");
    assert_int_equal(token_set_add(&in, &r, NULL), 0);
    fill(&r, "H2", TOKEN_HOTP, "");
    assert_int_equal(token_set_add(&in, &r, NULL), 0);
    assert_int_equal(tokenfile_write_pskc(&in, "correct horse", &text, &len, &err), 0);
    assert_null(err);
    assert_int_equal(len, strlen(text));
    assert_int_equal(tokenfile_detect(text, len), TOKENFILE_PSKC);
    /* the structure other PSKC tools expect (RFC 6030 §6.2) */
    assert_non_null(strstr(text, "<pkcs5:PBKDF2-params>"));
    assert_non_null(strstr(text, "<IterationCount>600000</IterationCount>"));
    assert_non_null(strstr(text, "xmldsig-more#hmac-sha256"));
    assert_non_null(strstr(text, "xmlenc#aes256-cbc"));
    assert_non_null(strstr(text, "<pskc:ValueMAC>"));
    assert_non_null(strstr(text, "<pskc:UserId>Ren\xc3\xa9"
                                 "e &amp; &lt;Co&gt;</pskc:UserId>"));
    /* the seed never appears in clear */
    assert_int_equal(b64_encode(in.v[1].seed, in.v[1].seed_len, b64, sizeof(b64)), 0);
    assert_null(strstr(text, b64));
    assert_null(strstr(text, "0b3055"));
    assert_int_equal(tokenfile_read_pskc(text, len, "correct horse", &out, &err), 0);
    assert_null(err);
    assert_int_equal(out.n, 2);
    assert_same(&in.v[0], &out.v[0]);
    assert_same(&in.v[1], &out.v[1]);
    token_set_free(&out);
    assert_int_equal(tokenfile_read_pskc(text, len, "wrong horse", &out, &err),
                     TOKENFILE_WRONG_PASSPHRASE);
    assert_non_null(strstr(err, "wrong passphrase, or the file was altered"));
    mfa_free(err);
    assert_int_equal(tokenfile_read_pskc(text, len, NULL, &out, &err), -1);
    assert_non_null(strstr(err, "a passphrase is needed"));
    mfa_free(err);
    assert_int_equal(out.n, 0);
    free(text);
    assert_int_equal(tokenfile_write_pskc(&in, "", &text, &len, &err), -1);
    assert_non_null(strstr(err, "passphrase"));
    free(err);
    token_set_free(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_hex_base32_defaults),
        cmocka_unit_test(test_csv_all_columns_encoding),
        cmocka_unit_test(test_csv_quotes_bom_crlf),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_csv_nul_and_size),
        cmocka_unit_test(test_csv_write_read),
        cmocka_unit_test(test_pskc_plain),
        cmocka_unit_test(test_pskc_rfc6030_figure7),
        cmocka_unit_test(test_pskc_figure7_refusals),
        cmocka_unit_test(test_pskc_python_pskc),
        cmocka_unit_test(test_pskc_hostile),
        cmocka_unit_test(test_pskc_hotp_errors),
        cmocka_unit_test(test_pskc_totp_errors),
        cmocka_unit_test(test_pskc_encryption_errors),
        cmocka_unit_test(test_pskc_no_mackey),
        cmocka_unit_test(test_pskc_bounds),
        cmocka_unit_test(test_pskc_preshared),
        cmocka_unit_test(test_pskc_write_read),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
