"""One contiguous buffer for a param group's values and one for its gradients.

Each Parameter's `.data` becomes a view into the value buffer and its `grad_slot` a view
into the gradient buffer, so an optimizer updates a whole model in a few vectorised
passes and a distributed optimizer all-reduces every gradient in one message, with no
packing copies. The gradient buffer is the head of `message`, whose tail holds one slot
per parameter (`flags`) and one last slot (`passes`): there a distributed optimizer says
which parameters have a gradient and how many backward passes the gradients hold, in the
same all-reduce as the gradients themselves.
"""
import numpy as np


class FlatGroup:
    def __init__(self, params):
        dtypes = {p.dtype for p in params}
        if len(dtypes) != 1:
            raise TypeError(f"all parameters of a param group must share one dtype, got {dtypes}")
        dtype = dtypes.pop()
        sizes = [p.data.size for p in params]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        total = int(offsets[-1])
        self.params = params
        self.slices = [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]
        self.data = np.empty(total, dtype=dtype)
        self.message = np.zeros(total + len(params) + 1, dtype=dtype)
        self.grad, self.flags = self.message[:total], self.message[total:-1]
        self.passes = self.message[-1:]
        self.data_views = [self.data[s].reshape(p.shape) for s, p in zip(self.slices, params)]
        self.grad_views = [self.grad[s].reshape(p.shape) for s, p in zip(self.slices, params)]
        self.gather()

    def gather(self):
        """Make every parameter's value and gradient live in the buffers (again, after a
        user rebound `.data` or `.grad`, or another optimizer took the parameter over);
        return which parameters have a gradient."""
        for param, data_view in zip(self.params, self.data_views):
            if param.data is not data_view:
                np.copyto(data_view, param.data)
                param.data = data_view
        return self.gather_grads(0, len(self.params))

    def gather_grads(self, first, stop):
        """`gather` for the gradients of parameters first..stop-1 alone (a distributed
        optimizer's bucket); returns which of them have a gradient."""
        present = np.zeros(stop - first, dtype=bool)
        for i in range(first, stop):
            param, grad_view = self.params[i], self.grad_views[i]
            param.grad_slot = grad_view
            if param.grad is not None:
                if param.grad is not grad_view:
                    np.copyto(grad_view, param.grad)
                    param.grad = grad_view
                present[i - first] = True
        return present

    def runs(self, selected, key):
        """Maximal contiguous buffer slices of selected parameters sharing the same key,
        so an update covers a whole model in one pass when all of them agree."""
        runs, start = [], None
        for i in range(len(self.params) + 1):
            ends = (i == len(self.params) or not selected[i]
                    or (start is not None and key[i] != key[start]))
            if start is not None and ends:
                runs.append((slice(self.slices[start].start, self.slices[i - 1].stop), key[start]))
                start = None
            if i < len(self.params) and selected[i] and start is None:
                start = i
        return runs
