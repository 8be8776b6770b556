// Encryption at rest: what an encrypted repository must hide and refuse.
// (Everything an unencrypted repository does, an encrypted one does too:
// RepoTest, repo_test_util.h, runs its whole suite again with "-encrypted".)
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/ids.h"
#include "repo/crypto.h"
#include "repo/format.h"
#include "repo/repo.h"
#include "repo/repo_test_util.h"

namespace strata::repo {
namespace {

class EncryptedRepo : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("enc_test_" + RandomHex(6));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::shared_ptr<Keyring> Key(char fill, const std::string& id = "k1") {
    return std::move(NewKeyringOfKey(std::string(32, fill), id)).value();
  }
  Result<std::unique_ptr<Repository>> Open(std::shared_ptr<Keyring> keyring) {
    RepoOptions o = kSmallRepoOptions;
    o.keyring = std::move(keyring);
    return Repository::Open(storage::NewBorrowedStore(mem_.get()), o);
  }
  // Every stored object's bytes, by key.
  std::map<std::string, std::string> AllObjects() {
    std::map<std::string, std::string> out;
    auto list = mem_->List("");
    for (const auto& o : *list) out[o.key] = *mem_->Get(o.key);
    return out;
  }

  fs::path dir_;
  std::unique_ptr<storage::ObjectStore> mem_ = storage::NewMemoryStore();
};

TEST_F(EncryptedRepo, ChunkIdsAreKeyedNotPlainSha256) {
  auto repo = std::move(Open(Key('a'))).value();
  std::string page = RandomBytes(512, 1);
  auto id = repo->TEST_ChunkId(page);
  ASSERT_TRUE(id.ok());
  Hash sha = Sha256(page);
  EXPECT_NE(*id, std::string(reinterpret_cast<const char*>(sha.data()), 32));
  // Stable for the repository's life (what dedup relies on), and specific to it:
  // another repository, even under the same KEK, has its own chunk-id key.
  repo.reset();
  repo = std::move(Open(Key('a'))).value();
  EXPECT_EQ(*repo->TEST_ChunkId(page), *id);
  auto other = std::move(Repository::Open(storage::NewMemoryStore(), RepoOptions{.keyring = Key('a')})).value();
  EXPECT_NE(*other->TEST_ChunkId(page), *id);
  // Unencrypted repositories keep SHA-256: their format is unchanged.
  auto plain = std::move(Repository::Open(storage::NewMemoryStore(), kSmallRepoOptions)).value();
  EXPECT_EQ(*plain->TEST_ChunkId(page), std::string(reinterpret_cast<const char*>(sha.data()), 32));
}

TEST_F(EncryptedRepo, NoPlaintextNameOrHashReachesTheStore) {
  // A recognizable page that does not compress (so an unencrypted repository
  // stores it verbatim), a file name, metadata and a change-log payload.
  std::string page = RandomBytes(512, 2);
  MemFile f{"customers-ledger.db", page + RandomBytes(512 * 20, 3) + page};
  std::string log_payload = RandomBytes(2000, 4);
  Hash sha = Sha256(page);
  std::string sha_bytes(reinterpret_cast<const char*>(sha.data()), 32);
  auto contains = [](const std::map<std::string, std::string>& objects, std::string_view needle) {
    for (const auto& [k, v] : objects)
      if (v.find(needle) != std::string::npos) return k;
    return std::string();
  };
  for (bool encrypted : {false, true}) {
    mem_ = storage::NewMemoryStore();
    auto repo = std::move(Open(encrypted ? Key('a') : nullptr)).value();
    ASSERT_TRUE(repo->CreateSnapshot("s1", {{"owner", "finance-team-secret"}}, {f.Source()}).ok());
    ASSERT_TRUE(repo->AppendLogSegment("db-X", AtMicros(1), AtMicros(2), log_payload).ok());
    auto objects = AllObjects();
    for (std::string_view needle : {std::string_view(page), std::string_view(sha_bytes),
                                    std::string_view("customers-ledger"), std::string_view("finance-team-secret"),
                                    std::string_view(log_payload).substr(0, 64)}) {
      if (encrypted) {
        EXPECT_EQ(contains(objects, needle), "") << "plaintext in an encrypted repository";
      } else {
        // The control: the test would see it if it were there.
        EXPECT_NE(contains(objects, needle), "");
      }
    }
    // Dedup still works: the page twice in the file is stored once.
    auto stats = repo->Stats();
    EXPECT_EQ(stats->chunks, 21u);
  }
}

TEST_F(EncryptedRepo, RoundTripAndDedupAcrossSnapshots) {
  auto repo = std::move(Open(Key('a'))).value();
  EXPECT_EQ(repo->key_id(), "k1");
  MemFile f{"data.db", RandomBytes(512 * 100, 5)};
  auto one = repo->CreateSnapshot("one", {}, {f.Source()});
  ASSERT_TRUE(one.ok());
  f.bytes[512 * 7 + 1] ^= 1;
  f.bytes[512 * 70 + 1] ^= 1;
  repo.reset();
  repo = std::move(Open(Key('a'))).value();  // dedup survives a reopen
  auto two = repo->CreateSnapshot("two", {}, {f.Source()});
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->new_chunks, 2u);
  EXPECT_EQ(two->stored_bytes, 2 * (512 + crypto::kSealOverhead)) << "random pages stay raw, plus nonce and tag";
  ASSERT_TRUE(repo->RestoreSnapshot("two", (dir_ / "out").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "out" / "data.db"), f.bytes);
  EXPECT_TRUE(repo->Verify(false)->ok());
}

TEST_F(EncryptedRepo, AMissingOrWrongKeyIsAClearError) {
  ASSERT_TRUE(Open(Key('a', "prod-2024")).ok());
  auto none = Open(nullptr);
  ASSERT_TRUE(none.status().Is(errors::kKMSKeyNotAccessible)) << none.status().ToString();
  EXPECT_NE(none.status().message().find("encrypted with key id prod-2024; no key was given"), std::string::npos)
      << none.status().message();
  auto wrong = Open(Key('b', "prod-2024"));  // the right name, another key
  ASSERT_TRUE(wrong.status().Is(errors::kKMSKeyNotAccessible)) << wrong.status().ToString();
  EXPECT_NE(wrong.status().message().find("encrypted with key id prod-2024; the key given does not match"),
            std::string::npos)
      << wrong.status().message();
  auto other_id = Open(Key('a', "staging"));
  ASSERT_TRUE(other_id.status().Is(errors::kKMSKeyNotAccessible));
  EXPECT_NE(other_id.status().message().find("has key id staging, not prod-2024"), std::string::npos)
      << other_id.status().message();
  EXPECT_TRUE(Open(Key('a', "prod-2024")).ok());
}

TEST_F(EncryptedRepo, AKeyForAnUnencryptedRepositoryIsRefused) {
  ASSERT_TRUE(Open(nullptr).ok());
  auto st = Open(Key('a')).status();
  EXPECT_TRUE(st.Is(errors::kInvalidParameterCombination)) << st.ToString();
  EXPECT_NE(st.message().find("is not encrypted, but a key was given"), std::string::npos) << st.message();
}

TEST_F(EncryptedRepo, AConfigSwappedForAnUnencryptedOneIsRefused) {
  ASSERT_TRUE(Open(Key('a')).ok());
  ASSERT_TRUE(mem_->Put("config", R"({"format_version": 1, "chunk_size": 512})").ok());
  EXPECT_TRUE(Open(nullptr).status().Is(errors::kCorruption));
  EXPECT_TRUE(Open(Key('a')).status().Is(errors::kInvalidParameterCombination));
}

TEST_F(EncryptedRepo, AMovedObjectOrChunkDoesNotAuthenticate) {
  auto repo = std::move(Open(Key('a'))).value();
  MemFile a{"data.db", RandomBytes(512 * 4, 6)};
  MemFile b{"data.db", RandomBytes(512 * 4, 7)};
  ASSERT_TRUE(repo->CreateSnapshot("a", {}, {a.Source()}).ok());
  ASSERT_TRUE(repo->CreateSnapshot("b", {}, {b.Source()}).ok());
  // The manifest of b put where a's was: intact bytes, wrong place.
  std::string a_manifest = *mem_->Get("snapshots/a");
  ASSERT_TRUE(mem_->Put("snapshots/a", *mem_->Get("snapshots/b")).ok());
  auto st = repo->RestoreSnapshot("a", (dir_ / "a").string());
  EXPECT_TRUE(st.Is(errors::kCorruption)) << st.ToString();
  EXPECT_FALSE(repo->Verify(false)->ok());
  ASSERT_TRUE(mem_->Put("snapshots/a", a_manifest).ok());
  // The two packs (one frame of four chunks each) swapped: intact sealed
  // frames in the wrong place. They authenticate, but no chunk taken from
  // them matches its keyed id.
  auto packs = *mem_->List("packs/");
  ASSERT_EQ(packs.size(), 2u);
  std::map<std::string, std::string> originals;
  for (const auto& p : packs) originals[p.key] = *mem_->Get(p.key);
  ASSERT_EQ(originals[packs[0].key].size(), 4 * 512 + crypto::kSealOverhead) << "one frame, stored raw";
  ASSERT_TRUE(mem_->Put(packs[0].key, originals[packs[1].key]).ok());
  ASSERT_TRUE(mem_->Put(packs[1].key, originals[packs[0].key]).ok());
  st = repo->RestoreSnapshot("a", (dir_ / "a2").string());
  EXPECT_TRUE(st.Is(errors::kCorruption)) << st.ToString();
  EXPECT_NE(st.message().find("data.db at offset 0 is corrupt (hash mismatch)"), std::string::npos)
      << st.message();
  auto report = repo->Verify(false);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->problems.size(), 8u);
  // A sealed frame with one bit flipped does not authenticate.
  std::string flipped = originals[packs[0].key];
  flipped[flipped.size() / 2] ^= 1;
  ASSERT_TRUE(mem_->Put(packs[0].key, flipped).ok());
  ASSERT_TRUE(mem_->Put(packs[1].key, originals[packs[1].key]).ok());
  st = repo->RestoreSnapshot("a", (dir_ / "a3").string());
  auto st_b = repo->RestoreSnapshot("b", (dir_ / "b3").string());
  EXPECT_TRUE(!st.ok() || !st_b.ok());
  std::string msg = st.ok() ? st_b.message() : st.message();
  EXPECT_NE(msg.find("chunk does not authenticate"), std::string::npos) << msg;
  for (const auto& [k, v] : originals) ASSERT_TRUE(mem_->Put(k, v).ok());
  EXPECT_TRUE(repo->Verify(false)->ok());
}

TEST(RepoKeyFile, HexOrRawMode0600AndAStableDerivedId) {
  fs::path dir = fs::temp_directory_path() / ("keyfile_" + RandomHex(6));
  fs::create_directories(dir);
  std::string key = RandomBytes(32, 8);
  auto write = [&](const std::string& name, const std::string& text, fs::perms mode) {
    std::ofstream(dir / name, std::ios::binary) << text;
    fs::permissions(dir / name, mode, fs::perm_options::replace);
    return dir / name;
  };
  auto hex = OpenKeyFile(write("hex", crypto::HexEncode(key) + "\n", fs::perms::owner_read | fs::perms::owner_write));
  auto raw = OpenKeyFile(write("raw", key, fs::perms::owner_read));
  ASSERT_TRUE(hex.ok()) << hex.status().ToString();
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  EXPECT_EQ((*hex)->DefaultKeyId(), (*raw)->DefaultKeyId());
  EXPECT_EQ((*hex)->DefaultKeyId().rfind("key-", 0), 0u);
  EXPECT_EQ((*hex)->DefaultKeyId().size(), 4u + 16u);
  // One file's wrapping opens with the other: they hold the same key.
  auto wrapped = (*hex)->Wrap((*hex)->DefaultKeyId(), "data key", "ctx");
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(*(*raw)->Unwrap((*raw)->DefaultKeyId(), *wrapped, "ctx"), "data key");
  EXPECT_TRUE((*raw)->Unwrap((*raw)->DefaultKeyId(), *wrapped, "other ctx").status().Is(errors::kKMSKeyNotAccessible));
  EXPECT_EQ((*OpenKeyFile(dir / "hex", "named"))->DefaultKeyId(), "named");

  auto open_st = OpenKeyFile(write("shared", crypto::HexEncode(key), fs::perms::owner_read | fs::perms::group_read));
  EXPECT_TRUE(open_st.status().Is(errors::kInvalidParameterValue));
  EXPECT_NE(open_st.status().message().find("chmod 600"), std::string::npos);
  EXPECT_TRUE(OpenKeyFile(write("short", "abcd", fs::perms::owner_read)).status().Is(errors::kInvalidParameterValue));
  EXPECT_TRUE(OpenKeyFile(dir / "hex", "bad/id").status().Is(errors::kInvalidParameterValue));
  EXPECT_TRUE(OpenKeyFile(dir / "absent").status().Is(errors::kInvalidParameterValue));
  fs::remove_all(dir);
}

TEST(RepoCrypto, SealOpenAndHmacAgreeWithOpenSsl) {
  crypto::SecretKey key(RandomBytes(32, 9));
  auto a = crypto::Seal(key, "same text", "aad");
  auto b = crypto::Seal(key, "same text", "aad");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b) << "a fresh nonce each time";
  EXPECT_EQ(a->size(), 9 + crypto::kSealOverhead);
  EXPECT_EQ(*crypto::Open(key, *a, "aad"), "same text");
  EXPECT_TRUE(crypto::Open(key, *a, "aaD").status().Is(errors::kCorruption));
  EXPECT_TRUE(crypto::Open(crypto::SecretKey(RandomBytes(32, 10)), *a, "aad").status().Is(errors::kCorruption));
  for (size_t i = 0; i < a->size(); ++i) {
    std::string bad = *a;
    bad[i] ^= 0x80;
    EXPECT_TRUE(crypto::Open(key, bad, "aad").status().Is(errors::kCorruption)) << "byte " << i;
  }
  EXPECT_TRUE(crypto::Open(key, a->substr(0, 20), "aad").status().Is(errors::kCorruption));
  EXPECT_EQ(*crypto::Open(key, *crypto::Seal(key, "", ""), ""), "");

  auto mac = std::move(crypto::HmacSha256::Create(key)).value();
  for (size_t n : {0, 1, 55, 64, 512, 4096, 100000}) {
    std::string data = RandomBytes(n, static_cast<uint32_t>(n));
    Hash want{};
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), 32, reinterpret_cast<const unsigned char*>(data.data()), data.size(), want.data(),
         &len);
    EXPECT_EQ(*mac->Mac(data), want) << n << " bytes";
  }
}

TEST(RepoCrypto, AStreamSealedInPiecesOpensAsOneSeal) {
  crypto::SecretKey key(RandomBytes(32, 11));
  std::string plain = RandomBytes(3 << 20, 12);
  std::string sealed;
  auto sealer = crypto::StreamSealer::Begin(key, "object aad", sealed);
  ASSERT_TRUE(sealer.ok());
  for (size_t at = 0; at < plain.size(); at += 700001) {
    ASSERT_TRUE((*sealer)->Update(std::string_view(plain).substr(at, 700001), sealed).ok());
  }
  ASSERT_TRUE((*sealer)->Finish(sealed).ok());
  EXPECT_EQ(sealed.size(), plain.size() + crypto::kSealOverhead);
  auto opened = crypto::Open(key, sealed, "object aad");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_TRUE(*opened == plain);
  EXPECT_TRUE(crypto::Open(key, sealed, "other aad").status().Is(errors::kCorruption));
  sealed[sealed.size() / 2] ^= 1;
  EXPECT_TRUE(crypto::Open(key, sealed, "object aad").status().Is(errors::kCorruption));
}

TEST(RepoFormat, AManifestStreamedInPiecesIsTheOneEncodedWhole) {
  Manifest m;
  m.id = "s";
  m.chunk_size = 4096;
  m.metadata = {{"engine", "sqlite"}};
  for (int f = 0; f < 3; ++f) {
    ManifestFile mf{"file" + std::to_string(f), 4096ull * 50000, 0600, {}};
    mf.chunks.resize(50000);
    for (size_t i = 0; i < mf.chunks.size(); ++i) mf.chunks[i] = Sha256(std::to_string(f * 100000 + i));
    m.files.push_back(mf);
  }
  std::string pieces;
  size_t calls = 0;
  ASSERT_TRUE(EncodeManifestTo(m, [&](std::string_view p) {
                ++calls;
                EXPECT_LT(p.size(), (size_t{1} << 20) + 64);
                pieces += p;
                return Status::Ok();
              }).ok());
  EXPECT_GT(calls, 4u);
  auto decoded = DecodeManifest(pieces);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->ChunkCount(), 150000u);
  EXPECT_EQ(decoded->files[2].chunks[49999], m.files[2].chunks[49999]);
  EXPECT_EQ(pieces, EncodeManifest(m));
}

}  // namespace
}  // namespace strata::repo
