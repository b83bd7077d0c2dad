#include "pickle/pickle_allowlist.hpp"

#include <algorithm>
#include <array>

namespace ckpt::pickle::detail {
namespace {

constexpr std::array kAllowed = {
    AllowedGlobal{"collections", "OrderedDict", Builder::kOrderedDict, std::nullopt},
    // Protocol 2 writes them as __builtin__.set: python3_name maps it.
    AllowedGlobal{"builtins", "set", Builder::kSet, std::nullopt},
    AllowedGlobal{"builtins", "frozenset", Builder::kSet, std::nullopt},
    AllowedGlobal{"_codecs", "encode", Builder::kCodecsEncode, std::nullopt},
    // OneFlow v0.6-v0.7 (real files), v0.8+, and v0.6-v0.7 parameters (pybind11 naming).
    AllowedGlobal{"oneflow._oneflow_internal", "Tensor", Builder::kOneflowTensor, Flavor::kOneflow},
    AllowedGlobal{"oneflow", "Tensor", Builder::kOneflowTensor, Flavor::kOneflow},
    AllowedGlobal{"oneflow.nn", "Parameter", Builder::kOneflowTensor, Flavor::kOneflow},
    AllowedGlobal{"oneflow._oneflow_internal.nn", "Parameter", Builder::kOneflowTensor, Flavor::kOneflow},
    // OneFlow 1.0 single files: tensors as numpy arrays (numpy._core under NumPy >= 2), OneFlow dtypes.
    AllowedGlobal{"numpy.core.multiarray", "_reconstruct", Builder::kNumpyReconstruct, Flavor::kOneflow},
    AllowedGlobal{"numpy._core.multiarray", "_reconstruct", Builder::kNumpyReconstruct, Flavor::kOneflow},
    AllowedGlobal{"numpy.core.multiarray", "scalar", Builder::kNumpyScalar, Flavor::kOneflow},
    AllowedGlobal{"numpy._core.multiarray", "scalar", Builder::kNumpyScalar, Flavor::kOneflow},
    AllowedGlobal{"numpy", "ndarray", Builder::kNumpyNdarray, Flavor::kOneflow},
    AllowedGlobal{"numpy", "dtype", Builder::kNumpyDtype, Flavor::kOneflow},
    AllowedGlobal{"oneflow._oneflow_internal", "dtype", Builder::kOneflowDtype, Flavor::kOneflow},
    AllowedGlobal{"torch._utils", "_rebuild_tensor_v2", Builder::kRebuildTensorV2, Flavor::kTorch},
    AllowedGlobal{"torch._utils", "_rebuild_tensor_v3", Builder::kRebuildTensorV3, Flavor::kTorch},
    AllowedGlobal{"torch._utils", "_rebuild_parameter", Builder::kRebuildParameter, Flavor::kTorch},
    AllowedGlobal{"torch", "Size", Builder::kTorchSize, Flavor::kTorch},
    AllowedGlobal{"torch", "FloatStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kFloat},
    AllowedGlobal{"torch", "DoubleStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kDouble},
    AllowedGlobal{"torch", "HalfStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kFloat16},
    AllowedGlobal{"torch", "BFloat16Storage", Builder::kTorchStorageType, Flavor::kTorch, DType::kBFloat16},
    AllowedGlobal{"torch", "LongStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kInt64},
    AllowedGlobal{"torch", "IntStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kInt32},
    AllowedGlobal{"torch", "ShortStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kInt16},
    AllowedGlobal{"torch", "CharStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kInt8},
    AllowedGlobal{"torch", "ByteStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kUInt8},
    AllowedGlobal{"torch", "BoolStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kBool},
    AllowedGlobal{"torch", "ComplexFloatStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kComplex64},
    AllowedGlobal{"torch", "ComplexDoubleStorage", Builder::kTorchStorageType, Flavor::kTorch, DType::kComplex128},
    // torch >= 2.1 (torch/_tensor.py, _reduce_ex_internal): the dtypes of
    // torch.storage._new_dtypes() are saved as an UntypedStorage (numel in
    // bytes) and rebuilt by _rebuild_tensor_v3 with the dtype as an argument.
    AllowedGlobal{"torch", kUntypedStorage, Builder::kTorchStorageType, Flavor::kTorch, DType::kUInt8},
    AllowedGlobal{"torch", "uint16", Builder::kTorchDtype, Flavor::kTorch, DType::kUInt16},
    AllowedGlobal{"torch", "uint32", Builder::kTorchDtype, Flavor::kTorch, DType::kUInt32},
    AllowedGlobal{"torch", "uint64", Builder::kTorchDtype, Flavor::kTorch, DType::kUInt64},
    AllowedGlobal{"torch", "complex32", Builder::kTorchDtype, Flavor::kTorch, DType::kComplex32},
    AllowedGlobal{"torch", "float8_e4m3fn", Builder::kTorchDtype, Flavor::kTorch, DType::kFloat8E4M3},
    AllowedGlobal{"torch", "float8_e5m2", Builder::kTorchDtype, Flavor::kTorch, DType::kFloat8E5M2},
    AllowedGlobal{"torch", "float8_e8m0fnu", Builder::kTorchDtype, Flavor::kTorch, DType::kFloat8E8M0},
};

// CPython's Lib/_compat_pickle.py (3.11): NAME_MAPPING (with its
// PYTHON2_EXCEPTIONS and MULTIPROCESSING_EXCEPTIONS rules expanded) and
// IMPORT_MAPPING, each with its updates, sorted.
constexpr std::array<std::pair<GlobalName, GlobalName>, 88> kNameMapping = {{
    {{"UserDict", "IterableUserDict"}, {"collections", "UserDict"}},
    {{"UserDict", "UserDict"}, {"collections", "UserDict"}},
    {{"UserList", "UserList"}, {"collections", "UserList"}},
    {{"UserString", "UserString"}, {"collections", "UserString"}},
    {{"__builtin__", "basestring"}, {"builtins", "str"}},
    {{"__builtin__", "intern"}, {"sys", "intern"}},
    {{"__builtin__", "long"}, {"builtins", "int"}},
    {{"__builtin__", "reduce"}, {"functools", "reduce"}},
    {{"__builtin__", "unichr"}, {"builtins", "chr"}},
    {{"__builtin__", "unicode"}, {"builtins", "str"}},
    {{"__builtin__", "xrange"}, {"builtins", "range"}},
    {{"_multiprocessing", "Connection"}, {"multiprocessing.connection", "Connection"}},
    {{"_socket", "fromfd"}, {"socket", "fromfd"}},
    {{"exceptions", "ArithmeticError"}, {"builtins", "ArithmeticError"}},
    {{"exceptions", "AssertionError"}, {"builtins", "AssertionError"}},
    {{"exceptions", "AttributeError"}, {"builtins", "AttributeError"}},
    {{"exceptions", "BaseException"}, {"builtins", "BaseException"}},
    {{"exceptions", "BufferError"}, {"builtins", "BufferError"}},
    {{"exceptions", "BytesWarning"}, {"builtins", "BytesWarning"}},
    {{"exceptions", "DeprecationWarning"}, {"builtins", "DeprecationWarning"}},
    {{"exceptions", "EOFError"}, {"builtins", "EOFError"}},
    {{"exceptions", "EnvironmentError"}, {"builtins", "EnvironmentError"}},
    {{"exceptions", "Exception"}, {"builtins", "Exception"}},
    {{"exceptions", "FloatingPointError"}, {"builtins", "FloatingPointError"}},
    {{"exceptions", "FutureWarning"}, {"builtins", "FutureWarning"}},
    {{"exceptions", "GeneratorExit"}, {"builtins", "GeneratorExit"}},
    {{"exceptions", "IOError"}, {"builtins", "IOError"}},
    {{"exceptions", "ImportError"}, {"builtins", "ImportError"}},
    {{"exceptions", "ImportWarning"}, {"builtins", "ImportWarning"}},
    {{"exceptions", "IndentationError"}, {"builtins", "IndentationError"}},
    {{"exceptions", "IndexError"}, {"builtins", "IndexError"}},
    {{"exceptions", "KeyError"}, {"builtins", "KeyError"}},
    {{"exceptions", "KeyboardInterrupt"}, {"builtins", "KeyboardInterrupt"}},
    {{"exceptions", "LookupError"}, {"builtins", "LookupError"}},
    {{"exceptions", "MemoryError"}, {"builtins", "MemoryError"}},
    {{"exceptions", "NameError"}, {"builtins", "NameError"}},
    {{"exceptions", "NotImplementedError"}, {"builtins", "NotImplementedError"}},
    {{"exceptions", "OSError"}, {"builtins", "OSError"}},
    {{"exceptions", "OverflowError"}, {"builtins", "OverflowError"}},
    {{"exceptions", "PendingDeprecationWarning"}, {"builtins", "PendingDeprecationWarning"}},
    {{"exceptions", "ReferenceError"}, {"builtins", "ReferenceError"}},
    {{"exceptions", "RuntimeError"}, {"builtins", "RuntimeError"}},
    {{"exceptions", "RuntimeWarning"}, {"builtins", "RuntimeWarning"}},
    {{"exceptions", "StandardError"}, {"builtins", "Exception"}},
    {{"exceptions", "StopIteration"}, {"builtins", "StopIteration"}},
    {{"exceptions", "SyntaxError"}, {"builtins", "SyntaxError"}},
    {{"exceptions", "SyntaxWarning"}, {"builtins", "SyntaxWarning"}},
    {{"exceptions", "SystemError"}, {"builtins", "SystemError"}},
    {{"exceptions", "SystemExit"}, {"builtins", "SystemExit"}},
    {{"exceptions", "TabError"}, {"builtins", "TabError"}},
    {{"exceptions", "TypeError"}, {"builtins", "TypeError"}},
    {{"exceptions", "UnboundLocalError"}, {"builtins", "UnboundLocalError"}},
    {{"exceptions", "UnicodeDecodeError"}, {"builtins", "UnicodeDecodeError"}},
    {{"exceptions", "UnicodeEncodeError"}, {"builtins", "UnicodeEncodeError"}},
    {{"exceptions", "UnicodeError"}, {"builtins", "UnicodeError"}},
    {{"exceptions", "UnicodeTranslateError"}, {"builtins", "UnicodeTranslateError"}},
    {{"exceptions", "UnicodeWarning"}, {"builtins", "UnicodeWarning"}},
    {{"exceptions", "UserWarning"}, {"builtins", "UserWarning"}},
    {{"exceptions", "ValueError"}, {"builtins", "ValueError"}},
    {{"exceptions", "Warning"}, {"builtins", "Warning"}},
    {{"exceptions", "ZeroDivisionError"}, {"builtins", "ZeroDivisionError"}},
    {{"itertools", "ifilter"}, {"builtins", "filter"}},
    {{"itertools", "ifilterfalse"}, {"itertools", "filterfalse"}},
    {{"itertools", "imap"}, {"builtins", "map"}},
    {{"itertools", "izip"}, {"builtins", "zip"}},
    {{"itertools", "izip_longest"}, {"itertools", "zip_longest"}},
    {{"multiprocessing", "AuthenticationError"}, {"multiprocessing.context", "AuthenticationError"}},
    {{"multiprocessing", "BufferTooShort"}, {"multiprocessing.context", "BufferTooShort"}},
    {{"multiprocessing", "ProcessError"}, {"multiprocessing.context", "ProcessError"}},
    {{"multiprocessing", "TimeoutError"}, {"multiprocessing.context", "TimeoutError"}},
    {{"multiprocessing.forking", "Popen"}, {"multiprocessing.popen_fork", "Popen"}},
    {{"multiprocessing.process", "Process"}, {"multiprocessing.context", "Process"}},
    {{"socket", "_socketobject"}, {"socket", "SocketType"}},
    {{"urllib", "ContentTooShortError"}, {"urllib.error", "ContentTooShortError"}},
    {{"urllib", "getproxies"}, {"urllib.request", "getproxies"}},
    {{"urllib", "pathname2url"}, {"urllib.request", "pathname2url"}},
    {{"urllib", "quote"}, {"urllib.parse", "quote"}},
    {{"urllib", "quote_plus"}, {"urllib.parse", "quote_plus"}},
    {{"urllib", "unquote"}, {"urllib.parse", "unquote"}},
    {{"urllib", "unquote_plus"}, {"urllib.parse", "unquote_plus"}},
    {{"urllib", "url2pathname"}, {"urllib.request", "url2pathname"}},
    {{"urllib", "urlcleanup"}, {"urllib.request", "urlcleanup"}},
    {{"urllib", "urlencode"}, {"urllib.parse", "urlencode"}},
    {{"urllib", "urlopen"}, {"urllib.request", "urlopen"}},
    {{"urllib", "urlretrieve"}, {"urllib.request", "urlretrieve"}},
    {{"urllib2", "HTTPError"}, {"urllib.error", "HTTPError"}},
    {{"urllib2", "URLError"}, {"urllib.error", "URLError"}},
    {{"whichdb", "whichdb"}, {"dbm", "whichdb"}},
}};
constexpr std::array<std::pair<std::string_view, std::string_view>, 55> kImportMapping = {{
    {"BaseHTTPServer", "http.server"},
    {"CGIHTTPServer", "http.server"},
    {"ConfigParser", "configparser"},
    {"Cookie", "http.cookies"},
    {"Dialog", "tkinter.dialog"},
    {"DocXMLRPCServer", "xmlrpc.server"},
    {"FileDialog", "tkinter.filedialog"},
    {"HTMLParser", "html.parser"},
    {"Queue", "queue"},
    {"ScrolledText", "tkinter.scrolledtext"},
    {"SimpleDialog", "tkinter.simpledialog"},
    {"SimpleHTTPServer", "http.server"},
    {"SimpleXMLRPCServer", "xmlrpc.server"},
    {"SocketServer", "socketserver"},
    {"StringIO", "io"},
    {"Tix", "tkinter.tix"},
    {"Tkconstants", "tkinter.constants"},
    {"Tkdnd", "tkinter.dnd"},
    {"Tkinter", "tkinter"},
    {"UserDict", "collections"},
    {"UserList", "collections"},
    {"UserString", "collections"},
    {"__builtin__", "builtins"},
    {"_abcoll", "collections.abc"},
    {"_elementtree", "xml.etree.ElementTree"},
    {"_winreg", "winreg"},
    {"anydbm", "dbm"},
    {"cPickle", "pickle"},
    {"cStringIO", "io"},
    {"commands", "subprocess"},
    {"cookielib", "http.cookiejar"},
    {"copy_reg", "copyreg"},
    {"dbhash", "dbm.bsd"},
    {"dbm", "dbm.ndbm"},
    {"dumbdbm", "dbm.dumb"},
    {"dummy_thread", "_dummy_thread"},
    {"gdbm", "dbm.gnu"},
    {"htmlentitydefs", "html.entities"},
    {"httplib", "http.client"},
    {"markupbase", "_markupbase"},
    {"repr", "reprlib"},
    {"robotparser", "urllib.robotparser"},
    {"test.test_support", "test.support"},
    {"thread", "_thread"},
    {"tkColorChooser", "tkinter.colorchooser"},
    {"tkCommonDialog", "tkinter.commondialog"},
    {"tkFileDialog", "tkinter.filedialog"},
    {"tkFont", "tkinter.font"},
    {"tkMessageBox", "tkinter.messagebox"},
    {"tkSimpleDialog", "tkinter.simpledialog"},
    {"ttk", "tkinter.ttk"},
    {"urllib2", "urllib.request"},
    {"urlparse", "urllib.parse"},
    {"whichdb", "dbm"},
    {"xmlrpclib", "xmlrpc.client"},
}};

}  // namespace

GlobalName python3_name(std::string_view module, std::string_view name) {
  for (const auto& [python2, python3] : kNameMapping) {
    if (python2.module == module && python2.name == name) return python3;
  }
  for (const auto& [python2, python3] : kImportMapping) {
    if (python2 == module) return {python3, name};
  }
  return {module, name};
}

const AllowedGlobal* find_allowed(std::string_view module, std::string_view name, Flavor flavor) {
  for (const AllowedGlobal& entry : kAllowed) {
    if (entry.module == module && entry.name == name && (!entry.only || *entry.only == flavor)) return &entry;
  }
  return nullptr;
}

const AllowedGlobal* find_allowed(std::string_view module, std::string_view name, Flavor flavor,
                                  const PicklePolicy& policy) {
  if (const AllowedGlobal* entry = find_allowed(module, name, flavor)) return entry;
  const AllowedGlobal* numpy = find_allowed(module, name, Flavor::kOneflow);
  if (numpy == nullptr) return nullptr;
  auto allowed_with = [&](Builder builder) {
    return std::any_of(kAllowed.begin(), kAllowed.end(),
                       [&](const AllowedGlobal& entry) { return entry.builder == builder && policy.allows(entry.module, entry.name); });
  };
  switch (numpy->builder) {
    case Builder::kNumpyReconstruct:
    case Builder::kNumpyScalar: return policy.allows(module, name) ? numpy : nullptr;
    case Builder::kNumpyNdarray:
    case Builder::kNumpyDtype:
      return policy.allows(module, name) || allowed_with(Builder::kNumpyReconstruct) || allowed_with(Builder::kNumpyScalar)
                 ? numpy
                 : nullptr;
    default: return nullptr;  // OneFlow's own classes stay OneFlow's
  }
}

std::string_view torch_storage_class(DType dtype) {
  for (const AllowedGlobal& entry : kAllowed) {
    if (entry.builder == Builder::kTorchStorageType && entry.dtype == dtype) return entry.name;
  }
  return {};
}

std::string_view torch_v3_dtype_name(DType dtype) {
  for (const AllowedGlobal& entry : kAllowed) {
    if (entry.builder == Builder::kTorchDtype && entry.dtype == dtype) return entry.name;
  }
  return {};
}

}  // namespace ckpt::pickle::detail

namespace ckpt::pickle {

bool PicklePolicy::allows(std::string_view module, std::string_view name) const {
  if (stub_unknown) return true;
  return std::any_of(allowed_globals.begin(), allowed_globals.end(), [&](const std::string& allowed) {
    return allowed.size() == module.size() + 1 + name.size() && allowed.starts_with(module) &&
           allowed[module.size()] == '.' && std::string_view(allowed).substr(module.size() + 1) == name;
  });
}

}  // namespace ckpt::pickle
