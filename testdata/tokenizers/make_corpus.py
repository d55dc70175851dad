#!/usr/bin/env python3
"""Write testdata/tokenizers/corpus.jsonl: the strings the tokenizer parity tests encode.

Stdlib only; deterministic (fixed seed). Each line is {"id": N, "cat": CATEGORY, "text": TEXT}.
Regenerate with:  python3 testdata/tokenizers/make_corpus.py > testdata/tokenizers/corpus.jsonl
then regenerate the *.expected.jsonl files with tools/refgen/tokenizers.py (they are keyed by id and
checked against the text, so a stale expectation fails loudly).

JSON strings cannot carry invalid UTF-8 or lone surrogates, so the corpus holds only valid text plus the
characters closest to it (U+FFFD, noncharacters, private use, BOM, C0/C1 controls, the last code point).
Invalid UTF-8 is tested in Go: Encode replaces each maximal invalid subsequence with U+FFFD exactly like
Python's bytes.decode("utf-8", errors="replace"), which is what a Python caller of HF tokenizers sees.
"""
import json
import random
import sys

rng = random.Random(20240605)
out = []


def add(cat, *texts):
    for t in texts:
        out.append((cat, t))


# --- empty and whitespace only -------------------------------------------------------------------
add("empty", "")
add("whitespace", " ", "  ", "   ", " " * 7, " " * 16, " " * 33, "\t", "\t\t", "\n", "\n\n", "\n\n\n",
    "\r", "\r\n", "\r\n\r\n", "\n\r", " \n", "\n ", " \n ", " \t \n \r\n ", "\u3000", "\u00a0",
    "\u00a0\u00a0 ", "\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\u1680", "\u2003\u2009\u200a",
    "\u202f\u205f", " " * 200, "\n" * 40, "\t" * 40, "\r\n" * 12, " \t" * 20)

# --- plain prose -----------------------------------------------------------------------------------
add("prose",
    "Hello world",
    "Hello, world!",
    "hello world",
    " Hello world",
    "Hello world ",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity.",
    "Mixture-of-Experts models route each token to a few experts; the rest stay idle.",
    "Don't stop believing. I'm sure you'll see they're right, we've won, he'd agree, it's fine.",
    "DON'T STOP. I'M SURE YOU'LL SEE THEY'RE RIGHT, WE'VE WON, HE'D AGREE, IT'S FINE.",
    "Don'T mix CaSeS: I'M, You'Re, We'Ve, She'Ll, He'D, It'S.",
    "quote 's 't 're 've 'm 'll 'd at the start",
    "'s",
    "'S",
    "'re'",
    "rock'n'roll, o'clock, y'all, ma'am",
    "the dog's bone and the dogs' bones",
    "typographic ’s and ’t apostrophes: don’t, it’s, we’re",
    "long s contraction: it'ſ and it'ſt",
    "Kelvin K and the word 'K",
    "CamelCaseIdentifiersLikeThisOne and XMLHttpRequest and iPhone and eBay",
    "ALLCAPS, lowercase, Titlecase, mIxEd",
    "ǅungla and ǈudevit use titlecase digraphs (Lt)",
    "Ms. Smith-Jones (née O'Neill) paid $3.50 for 2 coffees @ 9:30am.",
    "e.g., i.e., etc., vs., a.k.a.",
    "Wait... what?! Really?!?! No way!!!",
    "He said, \"Hello\" and she said 'goodbye'.",
    "Tabs\tbetween\twords\tand  double  spaces.",
    "Line one\nLine two\nLine three",
    "Windows\r\nline\r\nendings\r\n",
    "Old Mac\rline\rendings\r",
    "Mixed\n\r\n\rnewlines\n\n\r\r\n",
    "trailing spaces   \nand leading\n   spaces",
    "paragraph one.\n\nparagraph two.\n\n\nparagraph three.",
    "  indented with two spaces",
    "\tindented with a tab",
    "word\u00a0with\u00a0nbsp",
    "soft\u00adhyphen and zero\u200bwidth space",
    "multiple     spaces      between       words",
    "ends with newline\n",
    "ends with spaces    ",
    "ends with space and newline \n",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.",
    )

# --- other languages -------------------------------------------------------------------------------
add("intl",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Größenwahn ist keine Straße; Fußgänger überqueren.",
    "¿Dónde está la biblioteca? ¡Aquí!",
    "Ærøskøbing og Århus ligger i Danmark.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Zażółć gęślą jaźń.",
    "İstanbul'da ılık bir gün; I ı İ i.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "Tiếng Việt có dấu: Đây là một câu thử nghiệm.",
    "हिन्दी एक भारतीय भाषा है। नमस्ते दुनिया",
    "தமிழ் ஒரு செம்மொழி",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "ქართული ენა",
    "Հայերեն լեզու",
    "한국어 문장입니다. 안녕하세요, 세계!",
    "日本語の文章です。東京は日本の首都です。",
    "カタカナとひらがなと漢字が混ざっています",
    "中文句子测试：今天天气很好，我们去公园散步吧。",
    "繁體中文測試：臺灣的天氣很好。",
    "中文English混合mixed文本text",
    "Ｆｕｌｌｗｉｄｔｈ　ＡＳＣＩＩ　ｔｅｘｔ　１２３",
    "ｶﾀｶﾅ half-width katakana",
    "ᚠᛇᚻ᛫ᛒᛦᚦ runes",
    "ⲘⲉⲧⲢⲉⲙ̀ⲛⲭⲏⲙⲓ coptic",
    "𝕿𝖍𝖊 𝖖𝖚𝖎𝖈𝖐 math fraktur",
    "𝐁𝐨𝐥𝐝 𝑰𝒕𝒂𝒍𝒊𝒄 𝟏𝟐𝟑",
    "ℌℑℜ ℵ ℏ № ™ ℃ ℉",
    "ﬁ ﬂ ﬀ ligatures and ß ẞ",
    )

# --- right-to-left ---------------------------------------------------------------------------------
add("rtl",
    "العربية لغة جميلة.",
    "مرحبا بالعالم! ١٢٣٤٥٦٧٨٩٠",
    "שלום עולם",
    "עברית עם ניקוד: בְּרֵאשִׁית בָּרָא",
    "فارسی: سلام دنیا ۱۲۳",
    "اردو زبان",
    "mixed English and العربية in one line",
    "\u200fRLM mark\u200e LRM mark",
    "\u202eoverride reversed\u202c text",
    "\u2067isolate\u2069 and \u2066another\u2069",
    "ﷺ ﷽ presentation forms",
    )

# --- combining marks and normalization ------------------------------------------------------------
add("combining",
    "e\u0301",
    "cafe\u0301 vs caf\u00e9",
    "A\u030a and \u00c5 and \u212b",
    "n\u0303o\u0308u\u0302",
    "\u0301 leading combining mark",
    "\u0301\u0302\u0303",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
    "\u1100\u1161\u11a8 conjoining jamo",
    "\ud55c\uae00 vs \u1112\u1161\u11ab\u1100\u1173\u11af",
    "x\u20dd enclosing",
    "\u0915\u094d\u0937 conjunct",
    "a\u0308\u0301 stacked",
    "\u00f1 vs n\u0303",
    "\u1e9b\u0323",
    "\u0387 \u037e greek ano teleia and question mark",
    "\u2126 ohm, \u2000 en quad",
    "\uff21\u0301",
    "'\u0301s",
    "abc\u0301'S",
    )

# --- emoji -----------------------------------------------------------------------------------------
add("emoji",
    "😀",
    "I love 🍕 and 🍣!",
    "👍🏽 thumbs up medium skin",
    "👨\u200d👩\u200d👧\u200d👦 family",
    "🏳️\u200d🌈 flag",
    "🇺🇸🇫🇷🇯🇵 flags",
    "1️⃣ 2️⃣ #️⃣ keycaps",
    "❤️ ❤ ♥️",
    "🧑🏿\u200d🚀",
    "😀😃😄😁😆😅😂🤣🥲☺️😊😇🙂🙃😉😌😍🥰😘😗😙😚😋😛😝😜🤪🤨🧐🤓😎🥸🤩🥳",
    "emoji🙂inside🙂words",
    " 🙂",
    "🙂 ",
    "\U0001F9D1\u200d\U0001F91D\u200d\U0001F9D1",
    "☃ ☂ ☯ ✓ ✗ ★ ☆",
    "\U0001FAE0 \U0001FAE8 newer emoji",
    )

# --- code ------------------------------------------------------------------------------------------
add("code",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello, 世界\")\n}\n",
    "const x = (a, b) => { return a ?? b; }; // arrow\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "<html><head><title>Test</title></head><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "{\"name\": \"mach\", \"version\": [1, 2, 3], \"ok\": true, \"nested\": {\"a\": null}}",
    "[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]",
    "$ ls -la /usr/local/bin | grep -E '^-rwx' && echo \"done\" > /tmp/out.txt 2>&1",
    "if (x != y && !z || a <= b) { x += 1; y -= 2; z *= 3; a /= 4; b %= 5; }",
    "regex: ^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@(?:[a-z0-9-]+\\.)+[a-z]{2,}$",
    "path/to/some/file.go:123:45: undefined: foo",
    "https://example.com/path?query=1&other=two#fragment",
    "C:\\Users\\Name\\Documents\\file.txt",
    "// comment\n/* block\n   comment */\n# hash comment\n-- sql comment",
    "    four spaces\n        eight spaces\n\t\ttwo tabs\n",
    "x=1;y=2;z=x+y*3/4-5%6**7",
    "a->b, a=>b, a::b, a<=>b, a===b, a!==b, a>>>=b, a<<=b",
    "print(f\"{name!r:>10} {value:.3f}\")",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "| col1 | col2 |\n|------|------|\n| a    | b    |\n",
    "- item one\n- item two\n  - nested item\n1. numbered\n",
    "```python\nprint('hi')\n```",
    "__init__ __name__ __main__ _private __dunder__",
    "snake_case_identifier and kebab-case-identifier and SCREAMING_CASE",
    "////// slashes ////\n/\n//\r\n",
    "...///...\n\n",
    "!!!\n\n???\r\n",
    " !!! \n",
    "\\n \\t \\r \\\\ escaped",
    "@decorator\ndef f(*args, **kwargs): pass",
    "<div>\n  <span>text</span>\n</div>\n",
    "0x1F 0b1010 0o777 1e10 1.5e-3 .5 5. 1_000_000",
    )

# --- numbers ---------------------------------------------------------------------------------------
for n in range(1, 26):
    add("numbers", "".join(rng.choice("0123456789") for _ in range(n)))
add("numbers",
    "0", "00", "007", "1234567890", "3.14159265358979", "-42", "+7", "1,234,567.89", "1.234.567,89",
    "1e-10", "6.022e23", "2024-06-05T12:34:56Z", "12:30", "v1.2.3", "192.168.0.1", "$100", "€99,99",
    "50%", "1/2", "3rd 21st 42nd 100th", "abc123def456", "123abc", "a1b2c3", "2^10=1024",
    "٠١٢٣٤٥٦٧٨٩ arabic-indic", "۰۱۲۳۴۵۶۷۸۹ persian", "०१२३४५६७८९ devanagari", "１２３４５ fullwidth",
    "² ³ ¹ ⁴ superscripts", "½ ¼ ¾ ⅓ fractions", "Ⅰ Ⅱ Ⅻ ⅻ roman", "① ② ⑳ circled", "𝟘𝟙𝟚 math digits",
    "一二三 四五六 中文数字", "12345678901234567890123456789012345678901234567890",
    "3.141592653589793238462643383279502884197169399375105820974944592307816406286",
    "1 22 333 4444 55555 666666 7777777 88888888",
    "phone: +1 (555) 123-4567",
    )

# --- special tokens written inline -----------------------------------------------------------------
add("special",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>",
    "<|endoftext|>",
    "text<|endoftext|>more text",
    "<|endoftext|><|endoftext|>",
    " <|endoftext|> ",
    "<|im_start",
    "<|im_start|",
    "<<|im_end|>>",
    "<|im_end|>|>",
    "<think>\nreasoning here\n</think>\n\nanswer",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<tool_response>\n22C\n</tool_response>",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<|vision_start|><|image_pad|><|vision_end|>",
    "<|start|>system<|message|>You are ChatGPT.<|end|><|start|>user<|message|>Hi<|end|>",
    "<|start|>assistant<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>Hello<|return|>",
    "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\":\"Paris\"}<|call|>",
    "<|constrain|>json<|endofprompt|><|startoftext|>",
    "<|reserved_200000|>",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>user\nhi<end_of_turn>",
    "<eos><pad><unk><mask>",
    "<start_of_image><image_soft_token><end_of_image>",
    "[multimodal] <unused0> <unused99>",
    "<h1>Title</h1>",
    "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>Hello<｜Assistant｜>",
    "<｜end▁of▁sentence｜>",
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "<｜fim▁begin｜>a<｜fim▁hole｜>b<｜fim▁end｜>",
    "<|EOT|>",
    "<｜place▁holder▁no▁0｜>",
    "<｜begin▁of▁sentence",
    "x<|im_end|>y<end_of_turn>z<｜User｜>w<|end|>v",
    "<think></think>",
    "</think>",
    "<|im_start|><|im_start|><|im_end|>",
    "<|IM_START|>",
    )

# --- added tokens that are plain text for some tokenizers (Gemma newline/space/tab runs) -------------
add("added-runs",
    "a\nb", "a\n\nb", "a\n\n\n\n\n\nb", "a" + "\n" * 31 + "b", "a" + "\n" * 45 + "b",
    "a\tb", "a\t\tb", "a" + "\t" * 31 + "b", "a" + "\t" * 40 + "b",
    "a  b", "a" + " " * 31 + "b", "a" + " " * 45 + "b",
    "▁", "▁▁", "▁▁▁ literal lower blocks", "x▁y", "\u2581leading block",
    )

# --- long words and runs ----------------------------------------------------------------------------
add("long",
    "a" * 300,
    "ab" * 200,
    "Pneumonoultramicroscopicsilicovolcanoconiosis" * 8,
    "supercalifragilisticexpialidocious",
    "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/") for _ in range(400)),
    "9" * 500,
    "中" * 300,
    "😀" * 100,
    "!" * 200,
    "-" * 120 + "\n" + "=" * 120,
    "é" * 150,
    "\u0301" * 60,
    "ab\u0301" * 50,
    "x" * 1000 + " " + "y" * 1000,
    "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
    "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
    " ".join(["word"] * 200),
    "\n".join(["line %d of a longer document with some text" % i for i in range(60)]),
    )

# --- invalid-UTF-8-adjacent (the closest valid JSON strings) ----------------------------------------
add("edge-unicode",
    "\ufffd", "a\ufffdb", "\ufffd\ufffd\ufffd", "\ufeffBOM at start", "mid\ufeffBOM", "\ufffe\uffff nonchars",
    "\U0010ffff last code point", "\U000e0001\U000e0041 tags", "\ue000\uf8ff private use",
    "\U000f0000 supplementary private use", "\x00 nul", "a\x00b", "\x01\x02\x03\x1f controls", "\x7f del",
    "\x80\x81\x9f C1 controls", "\u200d zwj alone", "\u200c\u200d", "\u2060 word joiner",
    "\ufe0f variation selector alone", "\U000e0100 vs17", "\u061c arabic letter mark",
    "\U0001d11e musical symbol", "\U00020000 cjk ext b \U0002a6d6", "\u3400 cjk ext a",
    "\u00ff\u0100\u07ff\u0800\uffff\U00010000 boundaries",
    )

# --- mixed realistic chat / markdown -------------------------------------------------------------------
add("mixed",
    "User: What's 2+2?\nAssistant: 2+2 = 4.",
    "## Heading\n\n**bold** and *italic* and `code` and [link](https://x.y).\n\n> quote\n",
    "Q: ¿Qué hora es?\nA: Son las 3:45 p.m. 🙂",
    "Price: ¥1,000 / £8.50 / ₹750 / ₿0.0001",
    "Temperature dropped to −5 °C (23 °F) overnight.",
    "Em—dash, en–dash, ellipsis… and “smart quotes” ‘single’ «guillemets» „low“",
    "tab\tseparated\tvalues\n1\t2\t3\n",
    "key=value; other_key = \"quoted value\"; empty=",
    "SHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "UUID 123e4567-e89b-12d3-a456-426614174000",
    "email me at first.last+tag@example.co.uk",
    "The year 1999 ended; 2000 began. In 2024, 42% said yes.",
    "𝒳 = ∑ᵢ xᵢ² ≤ ∫₀^∞ f(x) dx ≈ 3.14 ± 0.01 ∀x ∈ ℝ",
    "→ ← ↑ ↓ ⇒ ⇔ ∞ ≠ ≥ ≤ × ÷",
    "a\u3000b\u3000c ideographic spaces",
    "\u00a0leading nbsp",
    "trailing nbsp\u00a0",
    "space before newline \n and tab before newline\t\n",
    "  \n  \n  ",
    " \r\n \r\n",
    "\n\n\nthree leading newlines",
    "x \n\n y",
    "?\n",
    " ?\r\n\r\n",
    "a  \t  b",
    "hello\u2028world\u2029end",
    "a\x85b",
    "tab\x0bvertical\x0cformfeed",
    )

# Deterministic random strings drawn from a mixed alphabet: they explore pre-tokenizer boundaries.
alphabet = (list("abcXYZ019 \t\n\r'!?./-_") + ["é", "\u0301", "中", "日", "😀", "\u200d", "\u00a0", "\u3000",
            "ا", "א", "ǅ", "ß", "Ω", "١", "½", "ー", "ｱ", "\ufffd", "<|im_end|>", "<end_of_turn>", "'s", "'LL",
            "\r\n", "  ", "//"])
for i in range(40):
    n = rng.randint(1, 40)
    add("random", "".join(rng.choice(alphabet) for _ in range(n)))

if len(out) < 300:
    sys.exit("corpus has only %d strings; want at least 300" % len(out))
seen = set()
for i, (cat, text) in enumerate(out):
    if text in seen:
        sys.exit("duplicate corpus string %r" % text)
    seen.add(text)
    text.encode("utf-8")  # raises on lone surrogates
    sys.stdout.write(json.dumps({"id": i, "cat": cat, "text": text}, ensure_ascii=False) + "\n")
