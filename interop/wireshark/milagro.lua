-- milagro.lua: a Wireshark/tshark postdissector for milagro_tls, TLS 1.2 with Bitcoin-anchored
-- private-use cipher suites (rfc/draft-milagro-tls-bitcoin-ake-00.md).
--
-- Stock Wireshark shows our suites as "Unknown (0xff20)", the locator extension as "Unknown type
-- 65463", and ServerKeyExchange/ClientKeyExchange as a type and a length only. Wireshark 4.0 has no
-- dissector table for TLS extension types or key-exchange bodies, so this script runs after the TLS
-- dissector (a postdissector), finds the handshake messages it parsed through the
-- tls.handshake.type fields (each FieldInfo knows its source Tvb and offset: the frame's bytes, or
-- the reassembled ones when a message spans several TLS records or TCP segments), and decodes them:
--
--   * ClientHello / ServerHello: our suites by name, and the bitcoin_locator extension (0xFFB7);
--   * ServerKeyExchange / ClientKeyExchange of the selected suite: the point, YAK's Schnorr proof,
--     and the staple (birth certificate JSON, anchor proof bundle header).
--
-- Usage:  tshark -r cap.pcap -X lua_script:interop/wireshark/milagro.lua -V
--         tshark -r cap.pcap -X lua_script:interop/wireshark/milagro.lua -Y 'milagro.txid == "..."'
-- or copy it to ~/.local/lib/wireshark/plugins/ (see README.md beside it).
--
-- Every read is bounds-checked: a malformed or truncated message gets an expert info
-- (milagro.malformed), never a Lua error.

local loaded, milagro = pcall(Proto, "milagro", "Milagro TLS (Bitcoin-anchored private suites)")
if not loaded then
    -- Installed as a plugin and given with -X lua_script: as well. The first copy stays.
    io.stderr:write("milagro.lua: a milagro dissector is already loaded (installed plugin?); "
                    .. "this copy (" .. debug.getinfo(1, "S").source .. ") is not used\n")
    return
end

-------------------------------------------------------------------------------------------------
-- Constants (they mirror milagro_tls; tests/wireshark checks them against the Python registry)
-------------------------------------------------------------------------------------------------

local LOCATOR_EXTENSION = 0xFFB7

-- milagro_tls/ciphersuites/registry.py SUITES: code -> IANA-style name, key exchange
local SUITES = {
    [0xFF20] = { name = "TLS_YAK_BTC_WITH_AES_128_GCM_SHA256",        kx = "yak" },
    [0xFF21] = { name = "TLS_YAK_BTC_WITH_AES_256_GCM_SHA384",        kx = "yak" },
    [0xFF22] = { name = "TLS_YAK_BTC_WITH_CHACHA20_POLY1305_SHA256",  kx = "yak" },
    [0xFF10] = { name = "TLS_ECDH_BTC_WITH_AES_128_GCM_SHA256",       kx = "ecdh" },
    [0xFF11] = { name = "TLS_ECDH_BTC_WITH_AES_256_GCM_SHA384",       kx = "ecdh" },
    [0xFF12] = { name = "TLS_ECDH_BTC_WITH_CHACHA20_POLY1305_SHA256", kx = "ecdh" },
}
local SUITE_NAMES = {}
for code, suite in pairs(SUITES) do SUITE_NAMES[code] = suite.name end

-- milagro_tls/chain/network.py Network
local NETWORKS = { [0] = "mainnet", [1] = "testnet3", [2] = "testnet4", [3] = "signet", [4] = "regtest" }
-- milagro_tls/identity/locator.py LocatorKind
local KINDS = { [1] = "p2wpkh", [2] = "taproot-batch" }

local LOCATOR_FIXED = 1 + 1 + 1 + 32 + 2 + 32 + 2   -- version network kind txid input block body_len
local KIND_TAPROOT_BATCH = 2
local MERKLE_HEADER = 4 + 4 + 1                     -- index size count (milagro_tls/merkle.py)
local LEAF_ITEM = 34                                -- 20 <32-byte key> opcode (milagro_tls/chain/taproot.py)
local OP_CHECKSIGVERIFY, OP_CHECKSIG, OP_CHECKSIGADD = 0xad, 0xac, 0xba
local MARKER_MAGIC = "4d494c4147524f"              -- "MILAGRO" (milagro_tls/identity/marker.py)
local POINT_SIZE = 33
local SCALAR_SIZE = 32
local PROOF_MAX_DEPTH = 24                          -- milagro_tls/chain/proof.py MAX_DEPTH
local HEADER_SIZE = 80

local HS_CLIENT_HELLO, HS_SERVER_HELLO = 1, 2
local HS_SERVER_KEY_EXCHANGE, HS_CLIENT_KEY_EXCHANGE = 12, 16

-------------------------------------------------------------------------------------------------
-- Fields
-------------------------------------------------------------------------------------------------

-- In this order in Wireshark's field list (tshark -G fields).
local f, field_list = {}, {}
local function field(key, protofield)
    f[key] = protofield
    field_list[#field_list + 1] = protofield
end

field("suite", ProtoField.uint16("milagro.suite", "Milagro suite", base.HEX, SUITE_NAMES))
field("suite_name", ProtoField.string("milagro.suite.name", "Suite name"))
field("suite_selected", ProtoField.uint16("milagro.suite.selected", "Selected suite", base.HEX, SUITE_NAMES))
field("key_exchange", ProtoField.string("milagro.key_exchange", "Key exchange"))

field("locator", ProtoField.bytes("milagro.locator", "Locator"))
field("locator_len", ProtoField.uint16("milagro.locator.length", "Locator length"))
field("locator_anon", ProtoField.bool("milagro.locator.anonymous", "Anonymous client (empty locator)"))
field("locator_ver", ProtoField.uint8("milagro.locator.version", "Locator version"))
field("network", ProtoField.string("milagro.network", "Network"))
field("kind", ProtoField.string("milagro.kind", "Kind"))
field("txid", ProtoField.string("milagro.txid", "Anchor txid"))
field("input", ProtoField.uint16("milagro.input", "Signing input"))
field("block_hash", ProtoField.string("milagro.block_hash", "Block hash"))
field("body_len", ProtoField.uint16("milagro.locator.body_length", "Body length"))
field("body", ProtoField.bytes("milagro.locator.body", "Body"))
-- The body of a taproot-batch locator (kind 2): position, and the certificate digest's Merkle
-- inclusion proof in the batch root (milagro_tls/merkle.py InclusionProof.encode()).
field("batch_position", ProtoField.uint16("milagro.batch.position", "PAT position"))
field("merkle_index", ProtoField.uint32("milagro.merkle.index", "Leaf index"))
field("merkle_size", ProtoField.uint32("milagro.merkle.size", "Tree size"))
field("merkle_count", ProtoField.uint8("milagro.merkle.count", "Path length"))
field("merkle_path", ProtoField.bytes("milagro.merkle.path", "Path hash"))

field("mode", ProtoField.string("milagro.mode", "Mode"))
field("point_len", ProtoField.uint8("milagro.point.length", "Point length"))
field("point", ProtoField.bytes("milagro.point", "Point"))
field("point_role", ProtoField.string("milagro.point.role", "Point role"))
field("nizk", ProtoField.none("milagro.nizk", "Schnorr proof (RFC 8235)"))
field("nizk_v_len", ProtoField.uint8("milagro.nizk.commitment.length", "Commitment length"))
field("nizk_v", ProtoField.bytes("milagro.nizk.commitment", "Commitment V"))
field("nizk_r", ProtoField.bytes("milagro.nizk.response", "Response r"))

field("staple", ProtoField.none("milagro.staple", "Staple"))
field("cert_len", ProtoField.uint16("milagro.cert.length", "Certificate length"))
field("certificate", ProtoField.string("milagro.certificate", "Certificate"))
field("cert_name", ProtoField.string("milagro.cert.name", "Name"))
field("cert_role", ProtoField.string("milagro.cert.role", "Role"))
field("cert_network", ProtoField.string("milagro.cert.network", "Network"))
field("cert_pubkey", ProtoField.string("milagro.cert.pubkey", "Identity key"))
field("cert_batch_key", ProtoField.string("milagro.cert.batch_key", "Batch key"))
field("proof_len", ProtoField.uint16("milagro.proof.length", "Proof length"))
field("proof", ProtoField.bytes("milagro.proof", "Proof bundle"))
field("proof_ver", ProtoField.uint8("milagro.proof.version", "Version"))
field("proof_height", ProtoField.uint32("milagro.proof.height", "Height"))
field("proof_header", ProtoField.bytes("milagro.proof.header", "Block header"))
field("hdr_version", ProtoField.int32("milagro.proof.header.version", "Version", base.DEC))
field("hdr_prev", ProtoField.string("milagro.proof.header.prev_block", "Previous block"))
field("hdr_merkle", ProtoField.string("milagro.proof.header.merkle_root", "Merkle root"))
field("hdr_time", ProtoField.absolute_time("milagro.proof.header.time", "Time", base.UTC))
field("hdr_bits", ProtoField.uint32("milagro.proof.header.bits", "Bits", base.HEX))
field("hdr_nonce", ProtoField.uint32("milagro.proof.header.nonce", "Nonce"))
field("proof_tx_index", ProtoField.uint32("milagro.proof.tx_index", "Transaction index"))
field("proof_depth", ProtoField.uint8("milagro.proof.depth", "Merkle depth"))
field("proof_branch", ProtoField.bytes("milagro.proof.branch", "Branch"))
field("proof_tx_len", ProtoField.uint24("milagro.proof.tx_length", "Transaction length"))
field("proof_tx", ProtoField.bytes("milagro.proof.tx", "Anchor transaction"))
field("proof_cb_len", ProtoField.uint24("milagro.proof.coinbase_length", "Coinbase length"))
field("proof_cb", ProtoField.bytes("milagro.proof.coinbase", "Coinbase transaction"))
field("proof_spent_n", ProtoField.uint16("milagro.proof.spent_count", "Spent outputs"))
field("spent_value", ProtoField.uint64("milagro.proof.spent.value", "Value (sat)"))
field("spent_script", ProtoField.bytes("milagro.proof.spent.script", "scriptPubKey"))
-- A taproot-batch staple: the slot the locator names, read from the batch transaction's witness
-- (milagro_tls/chain/batchverify.py; the dissector shows it, it verifies nothing).
field("batch", ProtoField.none("milagro.batch", "Taproot batch slot"))
field("batch_pat_count", ProtoField.uint16("milagro.batch.pat_count", "PAT keys in the leaf"))
field("batch_signed", ProtoField.uint16("milagro.batch.signed", "PAT signatures in the input"))
field("batch_leaf", ProtoField.bytes("milagro.batch.leaf", "Leaf script"))
field("batch_tbs_key", ProtoField.bytes("milagro.batch.tbs_key", "TBS key"))
field("batch_pat_key", ProtoField.bytes("milagro.batch.pat_key", "PAT key at the position"))
field("batch_witness_index", ProtoField.uint16("milagro.batch.witness_index", "Witness item"))
field("batch_signature", ProtoField.bytes("milagro.batch.signature", "PAT signature (BIP340)"))
field("batch_nonce_x", ProtoField.bytes("milagro.batch.nonce_x", "Nonce point R = lift_x(sig[0:32])"))
field("batch_control", ProtoField.bytes("milagro.batch.control_block", "Control block"))
field("batch_root", ProtoField.bytes("milagro.batch.root", "Batch root (marker 0x02)"))

milagro.fields = field_list

local ef = {
    malformed = ProtoExpert.new("milagro.malformed", "Malformed milagro message",
                                expert.group.MALFORMED, expert.severity.ERROR),
    point     = ProtoExpert.new("milagro.point.bad", "Point is not a 33-byte compressed SEC1 point",
                                expert.group.PROTOCOL, expert.severity.WARN),
    mode      = ProtoExpert.new("milagro.mode.mismatch", "ClientKeyExchange mode disagrees with the ClientHello",
                                expert.group.PROTOCOL, expert.severity.WARN),
    locator   = ProtoExpert.new("milagro.locator.unsupported", "Locator not understood by this dissector",
                                expert.group.UNDECODED, expert.severity.NOTE),
    empty     = ProtoExpert.new("milagro.batch.empty", "The PAT's slot is empty: this batch did not anchor it",
                                expert.group.PROTOCOL, expert.severity.WARN),
}
milagro.experts = { ef.malformed, ef.point, ef.mode, ef.locator, ef.empty }

local fx_hs_type = Field.new("tls.handshake.type")
local fx_stream  = Field.new("tcp.stream")

-------------------------------------------------------------------------------------------------
-- Helpers
-------------------------------------------------------------------------------------------------

-- A bounds-checked cursor over tvb[pos, stop). take() returns nil instead of raising when the
-- bytes are not there, so malformed input becomes an expert info rather than a Lua error.
local Reader = {}
Reader.__index = Reader

local function new_reader(tvb, pos, stop)
    return setmetatable({ tvb = tvb, pos = pos, stop = stop }, Reader)
end

function Reader:left() return self.stop - self.pos end

function Reader:take(n)
    if n <= 0 or self.pos + n > self.stop then return nil end
    local range = self.tvb(self.pos, n)
    self.pos = self.pos + n
    return range
end

function Reader:uint(n)
    local range = self:take(n)
    if not range then return nil end
    return range:uint(), range
end

-- Skips n bytes (n may be 0, which take() refuses); false when they are not there.
function Reader:skip(n)
    if n < 0 or self.pos + n > self.stop then return false end
    self.pos = self.pos + n
    return true
end

-- Bitcoin's CompactSize (little-endian after the 0xfd/0xfe prefix); nil when truncated or
-- 8 bytes long (nothing in a staple is that large).
function Reader:varint()
    local first = self:uint(1)
    if not first then return nil end
    if first < 0xfd then return first end
    if first == 0xff then return nil end
    local range = self:take(first == 0xfd and 2 or 4)
    return range and range:le_uint()
end

-- Bitcoin displays hashes byte-reversed (milagro_tls.chain.hashes.to_display_hex).
local function reversed_hex(range)
    local bytes = range:bytes()
    local parts = {}
    for i = bytes:len() - 1, 0, -1 do parts[#parts + 1] = string.format("%02x", bytes:get_index(i)) end
    return table.concat(parts)
end


-- How many faults malformed() reported: a message is summarised as malformed when its decoding
-- raised the count, whichever sub-item found the fault.
local faults = 0

local function malformed(item, text)
    faults = faults + 1
    item:add_proto_expert_info(ef.malformed, "Malformed milagro message: " .. text)
    item:append_text(" [Malformed: " .. text .. "]")
    return nil
end

-- The top-level string members of a JSON object ({"name":"x",...}); nested objects and arrays
-- are skipped. Enough for the canonical (RFC 8785) birth certificate.
local function json_top_level_strings(text)
    local members, depth, i, n = {}, 0, 1, #text
    local key, expect_value = nil, false
    local function read_string(start)         -- text:sub(start, start) == '"'
        local parts, j = {}, start + 1
        while j <= n do
            local c = text:sub(j, j)
            if c == '"' then return table.concat(parts), j + 1 end
            if c == "\\" then
                local e = text:sub(j + 1, j + 1)
                local map = { n = "\n", t = "\t", r = "\r", b = "\b", f = "\f" }
                if e == "u" then
                    local code = tonumber(text:sub(j + 2, j + 5), 16)
                    parts[#parts + 1] = (code and code < 128) and string.char(code) or "?"
                    j = j + 6
                else
                    parts[#parts + 1] = map[e] or e
                    j = j + 2
                end
            else
                parts[#parts + 1] = c
                j = j + 1
            end
        end
        return nil, n + 1
    end
    while i <= n do
        local c = text:sub(i, i)
        if c == '"' then
            local s, after = read_string(i)
            if s == nil then return members end
            if depth == 1 then
                if expect_value and key then
                    members[key] = s
                    key, expect_value = nil, false
                else
                    key = s
                end
            end
            i = after
        else
            if c == "{" or c == "[" then
                depth = depth + 1
                if depth > 1 then key, expect_value = nil, false end
            elseif c == "}" or c == "]" then
                depth = depth - 1
            elseif c == ":" and depth == 1 then
                expect_value = true
            elseif c == "," and depth == 1 then
                key, expect_value = nil, false
            end
            i = i + 1
        end
    end
    return members
end

-------------------------------------------------------------------------------------------------
-- Per-connection state: the client's locator (empty = anonymous = server-only mode) and the
-- selected suite, keyed by the frame that carried them so that random access in the GUI finds
-- the hello that precedes a key exchange.
-------------------------------------------------------------------------------------------------

local streams = {}

function milagro.init()
    streams = {}
end

local function stream_key()
    local fi = fx_stream()
    return fi and tostring(fi.value) or "-"
end

local function remember(kind, frame, value)
    local key = stream_key()
    streams[key] = streams[key] or { client = {}, server = {} }
    streams[key][kind][frame] = value
end

local function recall(kind, frame)
    local state = streams[stream_key()]
    if not state then return nil end
    local best, value = -1, nil
    for at, v in pairs(state[kind]) do
        if at <= frame and at > best then best, value = at, v end
    end
    return value
end

-------------------------------------------------------------------------------------------------
-- Locator extension
-------------------------------------------------------------------------------------------------

-- milagro_tls/merkle.py _path_length: the hashes an RFC 9162 inclusion path of leaf index in a
-- tree of size leaves has (a lone last node is carried up, never paired).
local function merkle_path_length(index, size)
    local count = 0
    while size > 1 do
        local sibling = (index % 2 == 0) and index + 1 or index - 1
        if sibling < size then count = count + 1 end
        index = math.floor(index / 2)
        size = math.floor((size + 1) / 2)
    end
    return count
end

-- The body of a taproot-batch locator: u16 position || u32 index || u32 size || u8 count ||
-- count x 32-byte hashes (the certificate digest's inclusion proof, lowest sibling first).
local function decode_batch_body(tree, tvb, off, len)
    local r = new_reader(tvb, off, off + len)
    local position, pr = r:uint(2)
    if not position then return malformed(tree, "taproot-batch body of " .. len .. " bytes has no position") end
    tree:add(f.batch_position, pr)
    local proof_len = r:left()
    if proof_len < MERKLE_HEADER then
        return malformed(tree, "inclusion proof is " .. proof_len .. " bytes, shorter than its 9-byte header")
    end
    local index, ir = r:uint(4)
    local size, sr = r:uint(4)
    local count, cr = r:uint(1)
    tree:add(f.merkle_index, ir)
    tree:add(f.merkle_size, sr)
    tree:add(f.merkle_count, cr)
    if proof_len ~= MERKLE_HEADER + 32 * count then
        return malformed(tree, "inclusion proof is " .. proof_len .. " bytes; a path of " .. count ..
                         " hashes needs " .. (MERKLE_HEADER + 32 * count))
    end
    for i = 1, count do tree:add(f.merkle_path, r:take(32)):prepend_text("#" .. i .. " ") end
    if size == 0 or index >= size then
        return malformed(tree, "inclusion proof index " .. index .. " out of range for size " .. size)
    end
    local needed = merkle_path_length(index, size)
    if count ~= needed then
        return malformed(tree, "inclusion proof path has " .. count .. " hashes; leaf " .. index .. " of " ..
                         size .. " needs " .. needed)
    end
    return { position = position, index = index, size = size }
end

local function decode_locator(tree, tvb, ext_off, data_len, origin)
    -- ext_off points at the extension's type; the data starts 4 bytes later.
    local whole = tvb(ext_off, 4 + data_len)
    if data_len == 0 then
        local item = tree:add(milagro, whole, "Locator (" .. origin .. "): empty, anonymous client")
        item:add(f.locator_len, tvb(ext_off + 2, 2))
        item:add(f.locator_anon, tvb(ext_off + 2, 2), true):set_generated()
        return { anonymous = true }
    end
    local data = tvb(ext_off + 4, data_len)
    local item = tree:add(f.locator, data)
    item:set_text("Locator (" .. origin .. "), " .. data_len .. " bytes")
    item:add(f.locator_len, tvb(ext_off + 2, 2))
    local r = new_reader(tvb, ext_off + 4, ext_off + 4 + data_len)
    if data_len < LOCATOR_FIXED then
        return malformed(item, "locator of " .. data_len .. " bytes, shorter than " .. LOCATOR_FIXED)
    end
    local version, vr = r:uint(1)
    item:add(f.locator_ver, vr)
    if version ~= 1 then
        item:add_proto_expert_info(ef.locator, "Locator version " .. version .. " is not 1")
    end
    local net, nr = r:uint(1)
    local network = NETWORKS[net] or ("unknown (" .. net .. ")")
    item:add(f.network, nr, network):append_text(" (" .. net .. ")")
    local kind_code, kr = r:uint(1)
    local kind = KINDS[kind_code] or ("unknown (" .. kind_code .. ")")
    item:add(f.kind, kr, kind):append_text(" (" .. kind_code .. ")")
    local txr = r:take(32)
    local txid = reversed_hex(txr)
    item:add(f.txid, txr, txid):append_text(" (display order)")
    local input, ir = r:uint(2)
    item:add(f.input, ir)
    local br = r:take(32)
    local block_hash = reversed_hex(br)
    item:add(f.block_hash, br, block_hash):append_text(" (display order)")
    local body_len, blr = r:uint(2)
    item:add(f.body_len, blr)
    local slot = nil
    if body_len > 0 then
        local body_off = r.pos
        local body = r:take(body_len)
        if not body then
            return malformed(item, "body length " .. body_len .. " exceeds the extension")
        end
        local bi = item:add(f.body, body)
        if kind_code == KIND_TAPROOT_BATCH then
            bi:set_text("Body: taproot-batch slot (" .. body_len .. " bytes)")
            slot = decode_batch_body(bi, tvb, body_off, body_len)
            if not slot then return nil end
        end
    elseif kind_code == KIND_TAPROOT_BATCH then
        return malformed(item, "taproot-batch locator without a body")
    end
    if r:left() > 0 then
        return malformed(item, r:left() .. " trailing bytes after the locator body")
    end
    local text = ": " .. network .. " " .. kind .. " " .. txid .. ":" .. input
    if slot then
        text = text .. ", position " .. slot.position .. ", leaf " .. slot.index .. " of " .. slot.size
    end
    item:append_text(text)
    -- What the staple of the same side is read against (a batch slot: input and position).
    return { anonymous = false, txid = txid, kind = kind_code, input = input,
             position = slot and slot.position }
end

-- Walks the extensions block of a hello; calls decode_locator for 0xFFB7.
local function hello_extensions(tree, r, origin)
    if r:left() == 0 then return nil end
    local ext_total = r:uint(2)
    if not ext_total or ext_total > r:left() then return nil end
    local er = new_reader(r.tvb, r.pos, r.pos + ext_total)
    local found = nil
    while er:left() >= 4 do
        local ext_off = er.pos
        local ext_type = er:uint(2)
        local ext_len = er:uint(2)
        if ext_len > er:left() then return found end
        if ext_type == LOCATOR_EXTENSION then
            found = decode_locator(tree, er.tvb, ext_off, ext_len, origin) or { malformed = true }
        end
        er.pos = er.pos + ext_len
    end
    return found
end

-------------------------------------------------------------------------------------------------
-- Hellos
-------------------------------------------------------------------------------------------------

local function decode_client_hello(tree, tvb, body_off, body_len, frame, info)
    local r = new_reader(tvb, body_off, body_off + body_len)
    if not r:take(2 + 32) then return end
    local sid_len = r:uint(1)
    if not sid_len or (sid_len > 0 and not r:take(sid_len)) then return end
    local cs_len = r:uint(2)
    if not cs_len or cs_len > r:left() then return end
    local offered = {}
    local suites_at = r.pos
    for i = 0, math.floor(cs_len / 2) - 1 do
        local code = tvb(suites_at + 2 * i, 2):uint()
        if SUITES[code] then offered[#offered + 1] = { code = code, at = suites_at + 2 * i } end
    end
    r.pos = r.pos + cs_len
    local comp_len = r:uint(1)
    if not comp_len or (comp_len > 0 and not r:take(comp_len)) then return end

    local has_locator_ext = false
    local ext_probe = new_reader(tvb, r.pos, r.stop)
    if #offered == 0 then
        -- Only a hello that offers our suites or carries a locator concerns us.
        local exts = ext_probe:uint(2)
        if exts then
            local er = new_reader(tvb, ext_probe.pos, math.min(ext_probe.pos + exts, r.stop))
            while er:left() >= 4 do
                local t, l = er:uint(2), er:uint(2)
                if t == LOCATOR_EXTENSION then has_locator_ext = true end
                if l > er:left() then break end
                er.pos = er.pos + l
            end
        end
        if not has_locator_ext then return end
    end

    local item = tree:add(milagro, tvb(body_off - 4, body_len + 4), "Milagro ClientHello")
    for _, s in ipairs(offered) do
        local si = item:add(f.suite, tvb(s.at, 2))
        si:prepend_text("Offered ")
        item:add(f.suite_name, tvb(s.at, 2), SUITES[s.code].name):set_hidden()
    end
    local locator = hello_extensions(item, r, "ClientHello")
    if locator and not locator.malformed then
        remember("client", frame, locator)
    elseif not locator then
        item:add_proto_expert_info(ef.malformed, "Malformed milagro message: ClientHello offers milagro suites without the bitcoin_locator extension")
    end
    local parts = {}
    if #offered > 0 then
        local text = "offers " .. SUITES[offered[1].code].name
        if #offered > 1 then text = text .. " +" .. (#offered - 1) end
        parts[#parts + 1] = text
    end
    if locator and locator.anonymous then
        parts[#parts + 1] = "anonymous client"
    elseif locator and locator.txid then
        parts[#parts + 1] = "client txid " .. locator.txid:sub(1, 16) .. "…"
    elseif locator then
        parts[#parts + 1] = "malformed locator"
    end
    item:append_text(": " .. table.concat(parts, ", "))
    info[#info + 1] = table.concat(parts, ", ")
end

local function decode_server_hello(tree, tvb, body_off, body_len, frame, info)
    local r = new_reader(tvb, body_off, body_off + body_len)
    if not r:take(2 + 32) then return end
    local sid_len = r:uint(1)
    if not sid_len or (sid_len > 0 and not r:take(sid_len)) then return end
    local code, cr = r:uint(2)
    if not code or not r:take(1) then return end
    -- Remembered whatever it is: a later handshake on the connection may select another suite.
    -- The server's locator joins it below (its ServerKeyExchange staple is read against it).
    local state = { code = code }
    remember("server", frame, state)
    local suite = SUITES[code]
    if not suite then return end
    local item = tree:add(milagro, tvb(body_off - 4, body_len + 4), "Milagro ServerHello: " .. suite.name)
    item:add(f.suite, cr):prepend_text("Selected ")
    item:add(f.suite_selected, cr):set_hidden()
    item:add(f.suite_name, cr, suite.name)
    item:add(f.key_exchange, cr, suite.kx == "yak" and "YAK-BTC" or "ECDH-BTC"):set_generated()
    local locator = hello_extensions(item, r, "ServerHello")
    state.locator = locator
    local text = suite.name
    if locator and locator.txid then
        text = text .. ", server txid " .. locator.txid:sub(1, 16) .. "…"
    elseif not locator then
        item:add_proto_expert_info(ef.malformed, "Malformed milagro message: ServerHello without a server locator")
    elseif locator.anonymous then
        item:add_proto_expert_info(ef.malformed, "Malformed milagro message: ServerHello with an empty locator")
    else
        text = text .. ", malformed locator"
    end
    info[#info + 1] = text
end

-------------------------------------------------------------------------------------------------
-- Key exchange: point, Schnorr proof, staple
-------------------------------------------------------------------------------------------------

local function add_point(tree, r, label, role)
    local plen, plr = r:uint(1)
    if not plen then return malformed(tree, "no point length") end
    tree:add(f.point_len, plr)
    if plen == 0 then return malformed(tree, "empty point") end
    local pr = r:take(plen)
    if not pr then return malformed(tree, "point of " .. plen .. " bytes runs past the message") end
    local item = tree:add(f.point, pr)
    item:append_text(" (" .. role .. ")")
    tree:add(f.point_role, pr, role):set_generated()
    local first = pr(0, 1):uint()
    if plen ~= POINT_SIZE or (first ~= 2 and first ~= 3) then
        item:add_proto_expert_info(ef.point)
    end
    return pr
end

-- The slot a taproot-batch locator names, read from the stapled batch transaction (BIP144
-- serialization): the leaf's keys, the PAT's signature at witness item N-1-position (PAT
-- signatures sit in reverse key order below the TBS's), the control block and the 0x02 root.
-- Returns a one-line summary, or nil when the transaction is not the batch form (malformed()
-- said why). An empty slot is shown with a warning: that batch did not anchor the PAT.
local function decode_batch_slot(tree, tvb, off, len, locator)
    local item = tree:add(f.batch, tvb(off, len))
    item:set_text("Taproot batch slot: input " .. locator.input .. ", position " .. locator.position)
    local r = new_reader(tvb, off, off + len)
    if not r:skip(4) or r:left() < 2 or tvb(r.pos, 1):uint() ~= 0 or tvb(r.pos + 1, 1):uint() ~= 1 then
        return malformed(item, "batch transaction has no witness (BIP144 marker and flag)")
    end
    r:skip(2)
    local n_in = r:varint()
    if not n_in or n_in == 0 then return malformed(item, "batch transaction has no inputs") end
    for i = 1, n_in do
        local script_len = r:skip(36) and r:varint()
        if not script_len or not r:skip(script_len + 4) then
            return malformed(item, "batch transaction truncated in input " .. (i - 1))
        end
    end
    local n_out = r:varint()
    if not n_out then return malformed(item, "batch transaction truncated before its outputs") end
    local markers, root = 0, nil
    for i = 1, n_out do
        local script_len = r:skip(8) and r:varint()
        local start = r.pos
        if not script_len or not r:skip(script_len) then
            return malformed(item, "batch transaction truncated in output " .. (i - 1))
        end
        if script_len >= 9 and tvb(start, 1):uint() == 0x6a
                and tvb(start + 2, 7):bytes():tohex():lower() == MARKER_MAGIC then
            markers = markers + 1
            if script_len == 42 and tvb(start + 1, 1):uint() == 0x28 and tvb(start + 9, 1):uint() == 2 then
                root = tvb(start + 10, 32)
            end
        end
    end
    local slot = nil
    for i = 0, n_in - 1 do
        local count = r:varint()
        if not count then return malformed(item, "batch transaction truncated in witness " .. i) end
        local items = {}
        for k = 1, count do
            local at = r.pos
            local item_len = r:varint()
            local start = r.pos
            if not item_len or not r:skip(item_len) then
                return malformed(item, "batch transaction truncated in witness " .. i .. " item " .. (k - 1))
            end
            items[k] = { at = at, off = start, len = item_len }
        end
        if i == locator.input then slot = items end
    end
    if not r:skip(4) or r:left() > 0 then return malformed(item, "batch transaction does not end after its lock time") end
    if not slot then
        return malformed(item, "locator names input " .. locator.input .. "; the batch has " .. n_in)
    end
    local count = #slot
    local n = count - 3
    if n < 1 then
        return malformed(item, "input " .. locator.input .. " has " .. count .. " witness items: not a batch spend")
    end
    local leaf, control = slot[count - 1], slot[count]
    if leaf.len ~= LEAF_ITEM * (n + 1) then
        return malformed(item, "leaf of " .. leaf.len .. " bytes; " .. n .. " PAT keys need " .. LEAF_ITEM * (n + 1))
    end
    for k = 0, n do
        local at = leaf.off + LEAF_ITEM * k
        local opcode = (k == 0 and OP_CHECKSIGVERIFY) or (k == 1 and OP_CHECKSIG) or OP_CHECKSIGADD
        if tvb(at, 1):uint() ~= 0x20 or tvb(at + 33, 1):uint() ~= opcode then
            return malformed(item, string.format("leaf item %d is not `20 <key> %02x`", k, opcode))
        end
    end
    local signed = 0
    for k = 1, n do
        if slot[k].len == 64 then signed = signed + 1 end
    end
    local leaf_range = tvb(leaf.off, leaf.len)
    item:add(f.batch_pat_count, leaf_range, n):set_generated()
    item:add(f.batch_signed, leaf_range, signed):set_generated()
    item:add(f.batch_leaf, leaf_range):set_text("Leaf script (" .. leaf.len .. " bytes, version 0xc0)")
    item:add(f.batch_tbs_key, tvb(leaf.off + 1, 32))
    if locator.position >= n then
        return malformed(item, "position " .. locator.position .. " is outside a leaf of " .. n .. " PAT keys")
    end
    item:add(f.batch_pat_key, tvb(leaf.off + LEAF_ITEM * (locator.position + 1) + 1, 32))
    local witness_index = n - 1 - locator.position
    local sig = slot[witness_index + 1]
    item:add(f.batch_witness_index, tvb(sig.at, sig.off - sig.at), witness_index):set_generated()
    local state
    if sig.len == 64 then
        item:add(f.batch_signature, tvb(sig.off, 64))
        item:add(f.batch_nonce_x, tvb(sig.off, 32))
        state = "signed"
    elseif sig.len == 0 then
        item:add_proto_expert_info(ef.empty)
        state = "EMPTY"
    else
        return malformed(item, "slot signature is " .. sig.len .. " bytes, not 64")
    end
    if control.len ~= 33 then return malformed(item, "last witness item is not a 33-byte control block") end
    item:add(f.batch_control, tvb(control.off, 33))
    if markers ~= 1 or not root then
        return malformed(item, "batch carries " .. markers .. " MILAGRO markers, expected one of type 0x02")
    end
    item:add(f.batch_root, root)
    local summary = "slot " .. locator.position .. " of " .. n .. " " .. state
    item:append_text(": " .. n .. " PAT keys, " .. signed .. " signed, this slot " .. state)
    return summary
end

local function decode_proof_bundle(tree, tvb, off, len, locator)
    local item = tree:add(f.proof, tvb(off, len))
    item:set_text("Proof bundle (" .. len .. " bytes)")
    local r = new_reader(tvb, off, off + len)
    local version, vr = r:uint(1)
    item:add(f.proof_ver, vr)
    local height, hr = r:uint(4)
    if not height then return malformed(item, "proof bundle truncated in its height") end
    item:add(f.proof_height, hr)
    local header = r:take(HEADER_SIZE)
    if not header then return malformed(item, "proof bundle truncated in its block header") end
    local hi = item:add(f.proof_header, header)
    hi:set_text("Block header (80 bytes)")
    hi:add_le(f.hdr_version, header(0, 4))
    hi:add(f.hdr_prev, header(4, 32), reversed_hex(header(4, 32)))
    hi:add(f.hdr_merkle, header(36, 32), reversed_hex(header(36, 32)))
    hi:add(f.hdr_time, header(68, 4), NSTime.new(header(68, 4):le_uint(), 0))
    hi:add_le(f.hdr_bits, header(72, 4))
    hi:add_le(f.hdr_nonce, header(76, 4))
    local tx_index, tir = r:uint(4)
    if not tx_index then return malformed(item, "proof bundle truncated in its tx_index") end
    item:add(f.proof_tx_index, tir)
    local depth, dr = r:uint(1)
    if not depth then return malformed(item, "proof bundle truncated in its depth") end
    local di = item:add(f.proof_depth, dr)
    if depth > PROOF_MAX_DEPTH then return malformed(di, "Merkle depth " .. depth .. " exceeds " .. PROOF_MAX_DEPTH) end
    for _, name in ipairs({ "txid", "coinbase", "wtxid" }) do
        if depth > 0 then
            local br = r:take(32 * depth)
            if not br then return malformed(item, "proof bundle truncated in its " .. name .. " branch") end
            item:add(f.proof_branch, br):set_text(name .. " branch: " .. depth .. " hashes")
        end
    end
    local tx_len, tlr = r:uint(3)
    if not tx_len then return malformed(item, "proof bundle truncated before the transaction") end
    item:add(f.proof_tx_len, tlr)
    local batch = nil
    if tx_len > 0 then
        local tx_off = r.pos
        local tx = r:take(tx_len)
        if not tx then return malformed(item, "transaction of " .. tx_len .. " bytes runs past the proof") end
        item:add(f.proof_tx, tx)
        if locator and locator.kind == KIND_TAPROOT_BATCH and locator.position then
            batch = decode_batch_slot(item, tvb, tx_off, tx_len, locator)
        end
    end
    local cb_len, clr = r:uint(3)
    if not cb_len then return malformed(item, "proof bundle truncated before the coinbase") end
    item:add(f.proof_cb_len, clr)
    if cb_len > 0 then
        local cb = r:take(cb_len)
        if not cb then return malformed(item, "coinbase of " .. cb_len .. " bytes runs past the proof") end
        item:add(f.proof_cb, cb)
    end
    local count, cntr = r:uint(2)
    if not count then return malformed(item, "proof bundle truncated before the spent outputs") end
    local si = item:add(f.proof_spent_n, cntr)
    for i = 1, count do
        local value = r:take(8)
        local slen = r:uint(2)
        if not value or not slen then return malformed(si, "spent output " .. i .. " truncated") end
        local script = slen > 0 and r:take(slen)
        if slen > 0 and not script then return malformed(si, "spent output " .. i .. " script truncated") end
        si:add(f.spent_value, value):prepend_text("#" .. i .. " ")
        if script then si:add(f.spent_script, script):prepend_text("#" .. i .. " ") end
    end
    if r:left() > 0 then return malformed(item, r:left() .. " trailing bytes after the proof bundle") end
    item:append_text(", height " .. height .. ", tx " .. tx_index .. ", depth " .. depth)
    return height, batch
end

local function decode_staple(tree, r, locator)
    if r:left() == 0 then return malformed(tree, "staple missing") end
    local staple_start = r.pos
    local item = tree:add(f.staple, r.tvb(r.pos, r:left()))
    local cert_len, clr = r:uint(2)
    if not cert_len then return malformed(item, "staple truncated in its certificate length") end
    item:add(f.cert_len, clr)
    if cert_len == 0 then return malformed(item, "empty certificate") end
    local cert = r:take(cert_len)
    if not cert then
        return malformed(item, "certificate of " .. cert_len .. " bytes runs past the message")
    end
    local text = cert:string(ENC_UTF_8)
    local ci = item:add(f.certificate, cert, text)
    local members = json_top_level_strings(text)
    local name, role = members["name"], members["role"]
    if name then ci:add(f.cert_name, cert, name):set_generated() end
    if role then ci:add(f.cert_role, cert, role):set_generated() end
    if members["network"] then ci:add(f.cert_network, cert, members["network"]):set_generated() end
    if members["pubkey"] then ci:add(f.cert_pubkey, cert, members["pubkey"]):set_generated() end
    if members["batch_key"] then ci:add(f.cert_batch_key, cert, members["batch_key"]):set_generated() end
    if not name or not role then malformed(ci, "certificate is not a birth certificate JSON object") end
    local proof_len, plr = r:uint(2)
    if not proof_len then return malformed(item, "staple truncated in its proof length") end
    item:add(f.proof_len, plr)
    if proof_len == 0 then return malformed(item, "empty proof") end
    if proof_len > r:left() then
        return malformed(item, "proof of " .. proof_len .. " bytes runs past the message")
    end
    local proof_off = r.pos
    r.pos = r.pos + proof_len
    item:set_len(r.pos - staple_start)
    local height, batch = decode_proof_bundle(item, r.tvb, proof_off, proof_len, locator)
    local summary = (name or "?") .. " (" .. (role or "?") .. ")"
    if height then summary = summary .. " @ height " .. height end
    if batch then summary = summary .. ", batch " .. batch end
    item:append_text(": " .. summary .. ", " .. cert_len .. " + " .. proof_len .. " bytes")
    return summary
end

local ROLES = {
    ecdh = { ske = { "Nonce point", "nonce point R_S" },
             cke_full = { "Nonce point", "nonce point R_C" },
             cke_anon = { "Ephemeral", "ephemeral E" } },
    yak  = { ske = { "Ephemeral", "ephemeral X_S" },
             cke_full = { "Ephemeral", "ephemeral X_C" },
             cke_anon = { "Ephemeral", "ephemeral X_C" } },
}

-- The body of a ServerKeyExchange/ClientKeyExchange: the point, YAK's proof, the staple. Returns
-- a one-line summary, or nil when the message is malformed (malformed() said where).
local function decode_key_exchange_body(item, r, suite, is_server, full, locator)
    local role = ROLES[suite.kx][is_server and "ske" or (full and "cke_full" or "cke_anon")]
    if not add_point(item, r, role[1], role[2]) then return nil end

    if suite.kx == "yak" then
        if r:left() == 0 then return malformed(item, "Schnorr proof missing") end
        local ni = item:add(f.nizk, r.tvb(r.pos, math.min(r:left(), 1 + POINT_SIZE + SCALAR_SIZE)))
        local vlen, vlr = r:uint(1)
        ni:add(f.nizk_v_len, vlr)
        local v = vlen > 0 and r:take(vlen)
        if not v then return malformed(ni, "commitment of " .. vlen .. " bytes runs past the message") end
        local vi = ni:add(f.nizk_v, v)
        local first = v(0, 1):uint()
        if vlen ~= POINT_SIZE or (first ~= 2 and first ~= 3) then vi:add_proto_expert_info(ef.point) end
        local resp = r:take(SCALAR_SIZE)
        if not resp then return malformed(ni, "response truncated") end
        ni:add(f.nizk_r, resp)
    end

    local summary = role[2]
    if full then
        local staple = decode_staple(item, r, locator)
        if not staple then return nil end
        summary = summary .. ", staple " .. staple
    end
    if r:left() > 0 then
        return malformed(item, r:left() .. " trailing bytes" .. (full and " after the staple" or ""))
    end
    return summary
end

local function decode_key_exchange(tree, tvb, body_off, body_len, hs_type, frame, info)
    local selected = recall("server", frame)
    local suite = selected and SUITES[selected.code]
    if not suite then return end
    local is_server = hs_type == HS_SERVER_KEY_EXCHANGE
    local name = is_server and "ServerKeyExchange" or "ClientKeyExchange"
    local item = tree:add(milagro, tvb(body_off - 4, body_len + 4), "Milagro " .. name .. " (" .. suite.name .. ")")
    item:add(f.suite_name, tvb(body_off - 4, 1), suite.name):set_generated()

    -- Mode of a ClientKeyExchange: from the ClientHello's locator (empty = server-only), checked
    -- against the length (a staple follows the point, and YAK's proof, or nothing does).
    local full = true
    if not is_server then
        local plen = body_len > 0 and tvb(body_off, 1):uint() or 0
        local bare = 1 + plen
        if suite.kx == "yak" and body_len >= 2 + plen then
            bare = bare + 1 + tvb(body_off + 1 + plen, 1):uint() + SCALAR_SIZE
        end
        local by_length = body_len > bare
        local client = recall("client", frame)
        if client ~= nil then
            full = not client.anonymous
            if full ~= by_length then
                item:add_proto_expert_info(ef.mode, "ClientHello locator says " ..
                    (full and "full" or "server-only") .. " mode, but the message " ..
                    (by_length and "carries" or "has no") .. " staple")
                full = by_length
            end
        else
            full = by_length
        end
        item:add(f.mode, tvb(body_off - 4, 1), full and "full" or "server-only"):set_generated()
    end

    local faults_before = faults
    -- The staple is read against the sender's own locator (a batch slot names input and position).
    local locator = is_server and selected.locator or recall("client", frame)
    local summary = decode_key_exchange_body(item, new_reader(tvb, body_off, body_off + body_len),
                                             suite, is_server, full, locator)
    if summary and faults == faults_before then
        item:append_text(": " .. summary)
        info[#info + 1] = summary
    else
        item:append_text(" [Malformed]")
        info[#info + 1] = "Malformed milagro " .. name
    end
end

-------------------------------------------------------------------------------------------------
-- The postdissector
-------------------------------------------------------------------------------------------------

function milagro.dissector(tvb, pinfo, tree)
    local types = { fx_hs_type() }
    if #types == 0 then return end
    local frame = pinfo.number
    local messages = {}
    for _, fi in ipairs(types) do
        local source, off = fi.source, fi.offset
        -- A handshake header whose body is not all in this Tvb is a fragment: the TLS dissector
        -- reassembles it and reports it again, whole, in the frame that completes it.
        if source and off + 4 <= source:len() then
            local hs_type = source(off, 1):uint()
            local body_len = source(off + 1, 3):uint()
            if off + 4 + body_len <= source:len() then
                messages[#messages + 1] = { tvb = source, type = hs_type, off = off + 4, len = body_len }
            end
        end
    end
    local info = {}
    -- Hellos first: a ServerKeyExchange usually shares its frame with the ServerHello it needs.
    for _, m in ipairs(messages) do
        if m.type == HS_CLIENT_HELLO then
            decode_client_hello(tree, m.tvb, m.off, m.len, frame, info)
        elseif m.type == HS_SERVER_HELLO then
            decode_server_hello(tree, m.tvb, m.off, m.len, frame, info)
        end
    end
    for _, m in ipairs(messages) do
        if m.type == HS_SERVER_KEY_EXCHANGE or m.type == HS_CLIENT_KEY_EXCHANGE then
            decode_key_exchange(tree, m.tvb, m.off, m.len, m.type, frame, info)
        end
    end
    if #info > 0 then
        pinfo.cols.info:append(" [" .. table.concat(info, "; ") .. "]")
    end
end

register_postdissector(milagro)
