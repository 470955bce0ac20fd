// The reference chat server: the Koa + Socket.IO + MySQL design of the
// tutorial Palaver replaces, the baseline bench/run.sh measures against.
// It keeps that design on purpose (one database connection, one INSERT per
// message, a scan over every connected socket per recipient, no
// authentication, no acks, no ids); README.md lists what differs from the
// tutorial's text so that it delivers at all.
const http = require('http');
const Koa = require('koa');
const mysql = require('mysql2');
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 3000);
const verbose = Boolean(process.env.VERBOSE);

const app = new Koa();
const server = http.createServer(app.callback());
const io = new Server(server);

// One connection for the whole server, as in the tutorial.
const db = mysql.createConnection({
  host: process.env.DB_HOST || '127.0.0.1',
  port: Number(process.env.DB_PORT || 3306),
  user: process.env.DB_USER || 'root',
  password: process.env.DB_PASSWORD || '',
  database: process.env.DB_NAME || 'chat_system',
});
db.connect((err) => {
  if (err) throw err;
  console.log('Connected to database');
});
const query = db.promise();

// Fix: the tutorial reads socket.user but nothing ever set it. The user
// is whoever the handshake says (`auth: {userId}`): still no authentication.
io.use((socket, next) => {
  socket.user = { user_id: Number(socket.handshake.auth && socket.handshake.auth.userId) };
  next();
});

// Fix: io.sockets.sockets is a Map in Socket.IO 4; walk its values.
// Still a linear scan over every connection for each recipient.
function socketOf(userId) {
  for (const socket of io.sockets.sockets.values()) {
    if (socket.user && socket.user.user_id === userId) return socket;
  }
  return null;
}

async function groupMembers(groupId) {
  const [rows] = await query.query('SELECT * FROM group_membership WHERE group_id = ?', [groupId]);
  return rows;
}

io.on('connection', (socket) => {
  if (verbose) console.log(`user ${socket.user.user_id} connected`);

  socket.on('message', async (data) => {
    const { conversationType, senderId, receiverId, content } = data || {};
    const message = {
      conversation_type: conversationType,
      sender_id: senderId,
      receiver_id: receiverId,
      content,
      created_at: new Date(),
    };
    try {
      // Fix: the row is stored before anyone is told about it.
      await query.query('INSERT INTO message SET ?', message);
      if (conversationType === 'private') {
        const receiver = socketOf(receiverId);
        if (receiver) io.to(receiver.id).emit('message', message);
      } else if (conversationType === 'group') {
        // Every member, the sender included (it gets its own message back).
        for (const member of await groupMembers(receiverId)) {
          const memberSocket = socketOf(Number(member.user_id));
          if (memberSocket) io.to(memberSocket.id).emit('message', message);
        }
      }
    } catch (err) {
      // Fix: a failed query is logged instead of ending the process with an
      // unhandled rejection. The sender is not told (there are no acks).
      console.error('message not stored or not sent:', err.message);
    }
  });

  socket.on('disconnect', () => {
    if (verbose) console.log(`user ${socket.user.user_id} disconnected`);
  });
});

server.listen(port, () => console.log(`Server is running on port ${port}`));
