// The standalone host arrives with its issue; until then it only says so.
Console.Error.WriteLine("MiniQueue.Host is not built yet: embed MiniQueue.Core (see README.md).");
return 1;
