# Regenerates the PyTorch fixtures of this directory (run with a Python that has torch; these were
# written by torch 1.13). The expected values are the tensors made contiguous and flattened.
import json, torch, torch.nn as nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
with torch.no_grad():
    model[0].weight.copy_(torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8)
    model[0].bias.copy_(torch.tensor([0.5, -1.0, 2.25]))
sd = model.state_dict()
base = torch.arange(10, dtype=torch.float32) * 0.25
sd["extra.tail"] = base[6:]                              # storage offset 6
sd["extra.transposed"] = model[0].weight.detach().t()    # stride (1, 4), shares the weight storage
sd["extra.bf16"] = torch.tensor([[1.0, -2.5], [3.140625, 0.0078125], [-256.0, 65536.0]], dtype=torch.bfloat16)
sd["extra.f16"] = torch.tensor([0.5, -1.25, 65504.0], dtype=torch.float16)
sd["extra.f64"] = torch.tensor([1.0 / 3, -2.0], dtype=torch.float64)
sd["extra.i64"] = torch.tensor([-1, 2**40, 7])
sd["extra.i32"] = torch.tensor([-5, 6], dtype=torch.int32)
sd["extra.i16"] = torch.tensor([-300, 301], dtype=torch.int16)
sd["extra.i8"] = torch.tensor([-7, 8], dtype=torch.int8)
sd["extra.u8"] = torch.tensor([200, 3], dtype=torch.uint8)
sd["extra.bool"] = torch.tensor([True, False, True])
sd["extra.scalar"] = torch.tensor(4.5)
sd["extra.empty"] = torch.zeros(0, 3)
torch.save(sd, "torch_state_dict.bin")
torch.save({"model": model.state_dict(keep_vars=True), "epoch": 3, "lr": 0.1}, "torch_wrapped.bin")

names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
         torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
         torch.bool: "BOOL"}
expected = {}
for k, v in sd.items():
    flat = v.detach().contiguous().reshape(-1)
    vals = [float(x) for x in flat.float().tolist()] if v.dtype.is_floating_point else [int(x) for x in flat.tolist()]
    expected[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "values": vals}
json.dump(expected, open("torch_state_dict.expected.json", "w"), indent=1)
